"""The training loop of ``hnet-seq train``: one path for one process, DDP and FSDP2.

Per step: a packed batch → model → the modality's per-position NLL → :class:`Objective`
(global NLL per unit + α·ratio loss per stage, statistics summed over ranks) → backward →
gradient clipping → AdamW → schedule.  Around it:

* bf16 autocast on CUDA (``train.precision``), optional ``torch.compile``;
* ``RUN_DIR/metrics.jsonl`` (+ TensorBoard), a rich progress bar or plain lines;
* held-out evaluation every ``logging.eval_every`` steps, in bits per base/byte/sample;
* checkpoints every ``checkpoint.every`` steps and at the end; ``resume=True`` continues exactly
  (model, AdamW, schedule, data position and RNG), bitwise on CPU;
* a NaN/inf loss or gradient norm stops the run (:class:`NonFiniteLoss`, the last good
  checkpoint kept) or, with ``train.on_nonfinite: skip``, skips the update;
* Ctrl-C (SIGINT), SIGTERM or SIGHUP: the current step finishes, a checkpoint is written and
  :class:`TrainingInterrupted` is raised (the CLI exits with status 130).

MFU (CUDA only) = model FLOPs per second / the GPU's dense bf16 peak.  Model FLOPs (counted on
every device; their running total, with the units seen, is in every train and eval record) are
:func:`hnet_seq.flops.training_flops` = 3 × forward FLOPs, counted per layer at each stage's
*measured* length (dynamic chunking changes the inner stages' work every step): Mamba-2
projections, conv and SSD scan, attention projections plus 4·d·(mean keys per query), SwiGLU
6·d·f, routing and residual projections, and the head; summed over all ranks.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..flops import training_flops
from ..model import HNetLM
from ..nn.isotropic import set_activation_checkpointing
from ..nn.routing import stage_lengths
from . import checkpointing as ckpt
from .config import RunConfig, save_run_config
from .data import TrainData, check_paths, to_device
from .metrics import METRICS, Console, MetricsWriter, WandbLogger, truncate_metrics
from .objective import LN2, Objective
from .optim import build_optimizer, build_schedule, clip_gradients
from ..runtime.device import autocast
from ..runtime.distributed import (DistInfo, any_rank, barrier, gather_objects, init_distributed, make_reducer,
                                   shutdown)
from .parallel import unwrap, wrap_model

RUN_CONFIG = "run_config.json"


class NonFiniteLoss(UserError):
    """The loss or gradient norm became NaN/inf; the message names the step and the last good checkpoint."""


class TrainingInterrupted(Exception):
    """Ctrl-C/SIGTERM/SIGHUP: a checkpoint was written; ``str()`` says where and how to resume
    (naming the parameters ``params``, as a :class:`UserError` does)."""

    params = ("resume", "run_dir")

    def __init__(self, message: str, checkpoint: Path | None, is_main: bool = True):
        super().__init__(message)
        self.checkpoint, self.is_main = checkpoint, is_main


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps completed
    checkpoint: Path | None  # the last checkpoint written
    heldout_bits_per_unit: float | None  # last held-out evaluation
    unit: str
    elapsed_s: float
    first_heldout_bits_per_unit: float | None = None  # held-out before training (step 0)
    rank: int = 0
    heldout_unscored: int = 0  # held-out targets never scored (DNA: N), not in the bits/unit


# ---- run directory -------------------------------------------------------------------------


def prepare_run_dir(run_dir: str | Path, resume: bool) -> Path:
    """Create/check ``run_dir``: writable, and not an existing run unless resuming.

    ``resume`` of a directory without a checkpoint (a run that failed or stopped before its
    first one) starts afresh: its old metrics are dropped.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory (run_dir)", params=("run_dir",))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{run_dir}: run directory is not writable ({e.strerror or e}); choose another run_dir",
                        params=("run_dir",)) from None
    has_run = ckpt.list_checkpoints(run_dir) or (run_dir / METRICS).exists()
    if resume and not ckpt.latest_checkpoint(run_dir):
        (run_dir / METRICS).unlink(missing_ok=True)
    elif has_run and not resume:
        raise UserError(f"{run_dir}: already holds a run; pass resume=True to continue it, or choose another run_dir",
                        params=("resume", "run_dir"))
    return run_dir


def _absolute(path: str) -> str:
    """An existing path made absolute; brace patterns and URLs stay as given."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _entries(run_dir: Path) -> set[str] | None:
    """The names in ``run_dir`` (None: it does not exist)."""
    return {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else None


def _restore(run_dir: Path, found: set[str] | None) -> None:
    """Remove what a failed start added to ``run_dir`` (all of it if it did not exist)."""
    import shutil

    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if found is None or p.name not in found:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if found is None:
        run_dir.rmdir()


def check_inputs(cfg: RunConfig, data_paths: list[str] | None) -> None:
    """Fail fast, before any work, on data paths that do not exist."""
    check_paths(list(data_paths or cfg.data.paths), "data_paths / data.paths", params=("data_paths",))
    check_paths(list(cfg.data.heldout_paths), "data.heldout_paths")


# ---- helpers -------------------------------------------------------------------------------


def _build_model(cfg, modality: str, options: dict, device: torch.device):
    """Model and adapter, built on ``device`` directly.

    (Like :func:`hnet_seq.checkpoint.build_model`, but the weights are created on ``device``
    instead of on the CPU and then moved.)
    """
    from ..modalities import get_adapter

    adapter = get_adapter(modality, **(options or {}))
    d = cfg.d_model[0]
    embeddings, head = adapter.make_embedding(d).to(device), adapter.make_head(d).to(device)
    return HNetLM(cfg, embeddings=embeddings, lm_head=head, device=device), adapter


def _head_out_features(model) -> int | None:
    head = unwrap(model).lm_head
    return getattr(head, "out_features", None)


class _StopFlag:
    """SIGINT/SIGTERM/SIGHUP → finish the step, checkpoint, stop; a second Ctrl-C aborts at once."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers
            pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---- the loop ------------------------------------------------------------------------------


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, data_paths: list[str] | None = None,
          quiet: bool = False) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (see the module docstring). Under torchrun, call on every rank."""
    info = init_distributed(cfg.train.device)
    threads = torch.get_num_threads()
    try:
        return _Trainer(cfg, Path(run_dir), info, resume, data_paths, quiet).run()
    finally:
        torch.set_num_threads(threads)  # train.threads applies to this run only
        shutdown()


class _Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, info: DistInfo, resume: bool, data_paths, quiet: bool):
        self.cfg, self.run_dir, self.info, self.resume = cfg, run_dir, info, resume
        self.data_paths, self.quiet = data_paths, quiet

    # ---- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, info = self.cfg, self.info
        check_inputs(cfg, self.data_paths)
        self.afresh = self.resume and ckpt.latest_checkpoint(self.run_dir) is None
        if info.is_main:
            prepare_run_dir(self.run_dir, self.resume)
        self.resume = self.resume and not self.afresh
        barrier()
        if cfg.train.threads and info.device.type == "cpu":
            torch.set_num_threads(cfg.train.threads)
        from ..modalities import get_adapter

        adapter = get_adapter(cfg.modality.name, **cfg.modality.options)
        model_cfg = cfg.model_config
        if hasattr(adapter, "table_size") and model_cfg.vocab_size != adapter.table_size:
            model_cfg = dataclasses.replace(model_cfg, vocab_size=adapter.table_size)
        self.model_cfg = model_cfg
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        model, self.adapter = _build_model(model_cfg, cfg.modality.name, cfg.modality.options, info.device)
        model.init_weights()
        set_activation_checkpointing(model, cfg.train.activation_checkpointing)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.data = TrainData(cfg, self.adapter, info.rank, info.world, self.data_paths)
        self.unit = self.adapter.unit_name
        self.model = wrap_model(model, cfg.train.parallel, info)
        if cfg.train.compile:
            self.model = torch.compile(self.model, dynamic=True)
        self.targets = cfg.target_compression()
        self.optimizer = build_optimizer(self.model, model_cfg, cfg.optim, self.targets,
                                         fused=info.device.type == "cuda" and cfg.train.parallel != "fsdp")
        self.schedule = build_schedule(self.optimizer, cfg.optim, cfg.schedule, cfg.train.steps)
        self.objective = Objective(self.targets, cfg.objective.ratio_loss_weight,
                                   getattr(self.adapter, "units_per_position", 1))
        self.autocast = lambda: autocast(info.device, cfg.train.precision)
        self.reduce = make_reducer(info)
        self.step = 0
        self.units_seen = 0.0
        self.flops_seen = 0.0  # training FLOPs spent so far, all ranks
        self.elapsed_before = 0.0
        self.last_checkpoint: Path | None = None
        self.first_eval: float | None = None
        self.last_eval: float | None = None
        self.last_unscored = 0
        self.peak = None
        if info.device.type == "cuda":
            from ..flops import peak_flops

            self.peak = (cfg.logging.peak_tflops * 1e12 if cfg.logging.peak_tflops
                         else peak_flops(torch.cuda.get_device_name(info.device)))
        if self.resume:
            self._load()
        if info.is_main:
            # The paths data_paths gave (absolute), so that resuming needs no data_paths.
            data = dataclasses.replace(cfg.data, paths=[_absolute(p) for p in self.data.paths])
            save_run_config(dataclasses.replace(cfg, model_config=model_cfg, data=data), self.run_dir / RUN_CONFIG)
        wandb = None
        if cfg.logging.wandb and info.is_main:
            wandb = WandbLogger(self.run_dir, cfg.logging.wandb_project, cfg.logging.wandb_mode,
                                json.loads((self.run_dir / RUN_CONFIG).read_text()))
        self.metrics = MetricsWriter(self.run_dir, enabled=info.is_main, tensorboard=cfg.logging.tensorboard,
                                     wandb=wandb)
        self.metrics.write({"kind": "resume" if self.resume else "start", "step": self.step, "unit": self.unit,
                            "modality": cfg.modality.name, "world_size": info.world,
                            "backend": info.backend, "device": str(info.device), "params": self.n_params,
                            "target_compression": self.targets, "steps": cfg.train.steps,
                            "unknown": self.data.unknown_stats})

    def _load(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir)
        saved_cfg = json.loads((path / "config.json").read_text())
        if saved_cfg != self.model_cfg.to_dict():
            diff = next(k for k in self.model_cfg.to_dict() if saved_cfg.get(k) != self.model_cfg.to_dict()[k])
            raise UserError(f"resume=True: the model config differs from the checkpoint's (field 'model.{diff}'); "
                            f"{path}", params=("resume",))
        state = ckpt.read_train_state(path)
        weights = ckpt.read_weights(path, self.model_cfg)
        ckpt.load_full_state(self.model, self.optimizer, weights, state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        same_world = int(state["world_size"]) == self.info.world
        self.data.load_state_dict(state["data"][self.info.rank if same_world else 0])
        if same_world:
            ckpt.set_rng_state(state["rng"][self.info.rank])
        progress = state.get("progress", {})
        self.step = int(state["step"])
        self.units_seen = float(progress.get("units_seen", 0.0))
        self.flops_seen = float(progress.get("flops_seen", 0.0))
        self.elapsed_before = float(progress.get("elapsed_s", 0.0))
        self.first_eval = progress.get("first_heldout")
        self.last_checkpoint = path
        if self.info.is_main:
            truncate_metrics(self.run_dir, self.step)

    # ---- pieces --------------------------------------------------------------------------
    def save(self) -> Path:
        info = self.info
        weights = ckpt.full_model_state(self.model)
        optim = ckpt.full_optimizer_state(self.model, self.optimizer)
        data_states = gather_objects(self.data.state_dict(), info)
        rngs = gather_objects(ckpt.rng_state(), info)
        train_state = {
            "step": self.step, "world_size": info.world, "optimizer": optim,
            "schedule": self.schedule.state_dict(), "data": data_states, "rng": rngs,
            "progress": {"units_seen": self.units_seen, "flops_seen": self.flops_seen, "elapsed_s": self.elapsed(),
                         "first_heldout": self.first_eval},
        }
        path = ckpt.save_train_checkpoint(self.run_dir, self.step, self.model, self.model_cfg, self.cfg.modality.name,
                                          dict(self.cfg.modality.options), train_state, self.cfg.checkpoint.keep,
                                          info.is_main, weights)
        barrier()
        self.last_checkpoint = path
        return path

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    @torch.no_grad()
    def evaluate(self) -> dict | None:
        if not self.data.eval_batches:
            return None
        model = self.model if self.cfg.train.parallel == "fsdp" and self.info.enabled else unwrap(self.model)
        model.eval()
        n = len(self.targets)
        sums = torch.zeros(3 + 2 * n, dtype=torch.float64, device=self.info.device)
        sums[-1] = self.data.eval_unscored  # N targets: in the windows, not in the loss
        upp = getattr(self.adapter, "units_per_position", 1)
        for raw in self.data.eval_batches:
            if self.stop.signal is not None and not self.info.enabled:  # a partial evaluation would mislead
                model.train()  # (with several ranks every rank finishes it: it is collective)
                return None
            b = to_device(raw, self.adapter.input_key, self.info.device)
            with self.autocast():
                out = model(b.inputs, b.packing)
                nll = self.adapter.loss(out.logits, b.targets)
            parts = [(nll.double() * b.weights.double()).sum(), b.weights.double().sum() * upp]
            for r in out.routing:
                parts += [r.boundary_mask.double().sum(), torch.tensor(float(r.boundary_mask.numel()),
                                                                       dtype=torch.float64, device=sums.device)]
            sums[:-1] += torch.stack(parts)
        model.train()
        total = self.reduce(sums).tolist()
        bpu = total[0] / max(total[1], 1.0) / LN2
        comp = [total[3 + 2 * i] / max(total[2 + 2 * i], 1.0) for i in range(n)]
        return {"kind": "eval", "step": self.step, "bits_per_unit": bpu, "compression": comp, "units": total[1],
                "unscored": total[-1],
                "units_seen": self.units_seen, "flops_seen": self.flops_seen, "elapsed_s": self.elapsed()}

    def run_eval(self) -> None:
        rec = self.evaluate()
        if rec is None:
            return
        self.metrics.write(rec)
        if self.step == 0:
            self.first_eval = rec["bits_per_unit"]
        self.last_eval = rec["bits_per_unit"]
        self.last_unscored = int(rec["unscored"])
        self.console.eval(self.step, rec["bits_per_unit"], rec["compression"])

    def nonfinite(self, what: str, value: float) -> None:
        """Stop (raise) or count a skipped step."""
        if self.cfg.train.on_nonfinite == "skip":
            self.skipped_in_a_row += 1
            self.console.log(f"step {self.step}: {what} is {value}; update skipped "
                             f"({self.skipped_in_a_row} in a row)")
            if self.skipped_in_a_row <= self.cfg.train.max_skipped_steps:
                return
            what = f"{what} ({self.skipped_in_a_row} non-finite steps in a row)"
        last = self.last_checkpoint
        where = (f"last good checkpoint: {last} (resume=True continues from it)" if last
                 else "no checkpoint was written before it")
        raise NonFiniteLoss(f"step {self.step}: {what} is {value}; training stopped, {where}; "
                            "try a lower optim.lr or train.on_nonfinite=skip", params=("resume",))

    # ---- main ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.stop = _StopFlag()
        restore = self.info.is_main and not self.resume
        found = _entries(self.run_dir)
        with self.stop:
            try:
                self.setup()
                try:
                    return self._run()
                finally:
                    self.metrics.close()
                    if hasattr(self, "console"):
                        self.console.close()
            except BaseException:
                if restore and getattr(self, "step", 0) == 0 and getattr(self, "last_checkpoint", None) is None:
                    _restore(self.run_dir, found)  # a failed start leaves the directory as it was
                raise

    def _run(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        total_steps = cfg.train.steps
        self.console = Console(total_steps, self.step, self.unit, cfg.logging.progress, cfg.logging.print_every,
                               enabled=info.is_main and not self.quiet)
        if self.resume:
            self.console.log(f"resumed from {self.last_checkpoint} at step {self.step}")
        elif self.afresh:
            self.console.log(f"{self.run_dir} has no checkpoint to resume from yet; starting afresh")
        self.model.train()
        self.t_start = time.perf_counter()
        self.skipped_in_a_row = 0
        window_t, window_pos, window_flops, self.paused_s = time.perf_counter(), 0.0, 0.0, 0.0
        head_out = _head_out_features(self.model)
        on_cuda = info.device.type == "cuda"
        if self.step == 0 and cfg.logging.eval_every:
            self.run_eval()
        while self.step < total_steps:
            raw = self.data.next_batch()
            b = to_device(raw, self.adapter.input_key, info.device)
            with self.autocast():
                out = self.model(b.inputs, b.packing)
                nll = self.adapter.loss(out.logits, b.targets)
            self.step += 1
            if cfg.train.inject_nan_at_step == self.step:
                nll = nll * float("nan")
            flops = training_flops(self.model_cfg, stage_lengths(b.packing, out.routing), head_out)
            obj = self.objective(nll, b.weights, out.routing, self.reduce, info.world,
                                 extra=[b.positions, flops])
            positions, flops = obj.extra
            skipped = False
            if not math.isfinite(obj.total):
                self.nonfinite("loss", obj.total)
                skipped, grad_norm = True, float("nan")
            else:
                obj.loss.backward()
                grad_norm = float(clip_gradients(self.model, cfg.optim.grad_clip))
                if not math.isfinite(grad_norm):
                    self.nonfinite("gradient norm", grad_norm)
                    skipped = True
            lr = self.schedule.lr
            if not skipped:
                self.optimizer.step()
                self.skipped_in_a_row = 0
            self.optimizer.zero_grad(set_to_none=True)
            self.schedule.step()
            self.units_seen += obj.units
            self.flops_seen += flops
            window_pos += positions
            window_flops += flops
            rec = None
            if cfg.logging.every and self.step % cfg.logging.every == 0 or self.step == total_steps:
                if on_cuda:
                    torch.cuda.synchronize()
                now = time.perf_counter()
                dt = max(now - window_t - self.paused_s, 1e-9)  # eval and checkpoint time excluded
                rec = {"kind": "train", "step": self.step, "loss": obj.total, "nll": obj.nll,
                       "bits_per_unit": obj.bits_per_unit, "ratio_loss": obj.ratio_losses,
                       "compression": obj.compression, "boundary_prob": obj.boundary_prob, "lr": lr,
                       "grad_norm": grad_norm, "units": obj.units, "positions": positions,
                       "units_seen": self.units_seen, "flops_seen": self.flops_seen,
                       "tokens_per_s": window_pos / dt, "elapsed_s": self.elapsed(), "skipped": skipped}
                if self.peak:
                    rec["mfu"] = window_flops / (info.world * self.peak * dt)
                if on_cuda:
                    rec["memory_gb"] = torch.cuda.max_memory_allocated(info.device) / 2 ** 30
                self.metrics.write(rec)
                window_t, window_pos, window_flops, self.paused_s = now, 0.0, 0.0, 0.0
            self.console.step(self.step, rec)
            stopping = any_rank(self.stop.signal is not None, info)
            t_pause = time.perf_counter()
            if cfg.logging.eval_every and self.step % cfg.logging.eval_every == 0 and not stopping:
                self.run_eval()
            if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and self.step < total_steps:
                self.save()
            self.paused_s += time.perf_counter() - t_pause
            if stopping:
                path = self.last_checkpoint if self.last_checkpoint and self.last_checkpoint.name == \
                    ckpt.step_dir_name(self.step) else self.save()
                self.console.close()
                name = signal.Signals(self.stop.signal).name if self.stop.signal else "signal"
                raise TrainingInterrupted(f"{name} at step {self.step}: checkpoint saved to {path}; continue with "
                                          f"resume=True run_dir={self.run_dir}", path, info.is_main)
        if cfg.logging.eval_every == 0 or self.step % cfg.logging.eval_every:
            self.run_eval()
        path = self.save() if cfg.checkpoint.at_end else self.last_checkpoint
        self.console.close()
        return TrainResult(self.run_dir, self.step, path, self.last_eval, self.unit, self.elapsed(), self.first_eval,
                           info.rank, self.last_unscored)


__all__ = ["NonFiniteLoss", "TrainResult", "TrainingInterrupted", "check_inputs", "prepare_run_dir", "train"]
