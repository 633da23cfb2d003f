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

The pieces around the loop live apart: the run directory (:mod:`.run_dir`), held-out
evaluation (:mod:`.evaluation`), checkpoints (:mod:`.checkpointing`), parallelism
(:mod:`.parallel`), metrics and console (:mod:`.metrics`), and how a run ends (:mod:`.outcome`).
What stays (~310 lines) is the loop and the setup it needs, so that a step reads top to bottom.

MFU (CUDA only) = model FLOPs per second / the GPU's dense bf16 peak.  Model FLOPs
(:func:`hnet_seq.flops.training_flops`, at each stage's *measured* length, summed over ranks;
their running total, with the units seen, is in every train and eval record).
"""
from __future__ import annotations

import dataclasses
import gc
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..flops import training_flops
from ..nn.routing import stage_lengths
from ..runtime.device import autocast
from ..runtime.distributed import DistInfo, any_rank, barrier, init_distributed, make_reducer, shutdown
from . import checkpointing as ckpt
from .build import build_run, head_out_features
from .config import RunConfig, save_run_config
from .data import to_device
from .evaluation import evaluate
from .metrics import Console, MetricsWriter, Window, truncate_metrics
from .optim import clip_gradients
from .outcome import NonFiniteLoss, StopFlag, TrainingInterrupted, TrainResult
from .parallel import unwrap
from .run_dir import RUN_CONFIG, absolute_path, check_inputs, entries, prepare_run_dir, restore


@dataclass
class _Step:
    """One step's numbers for its train record."""

    obj: object  # the Objective's result
    positions: float
    grad_norm: float
    lr: float
    skipped: bool


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, data_paths: list[str] | None = None,
          quiet: bool = False) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (see the module docstring). Under torchrun, call on every rank."""
    info = init_distributed(cfg.train.device)
    threads = torch.get_num_threads()
    finished = False
    trainer = None
    try:
        trainer = _Trainer(cfg, Path(run_dir), info, resume, data_paths, quiet)
        result = trainer.run()
        finished = True
        return result
    finally:
        torch.set_num_threads(threads)  # train.threads applies to this run only
        # The trainer refers to itself through its closures, so reference counts never free it: left
        # to the cyclic collector, its DDP/FSDP model and the gloo work that holds the model's tensors
        # could outlive the process group into the interpreter's teardown, a known way for a gloo
        # rank to abort at exit ("terminate called without an active exception").  Free it now.
        del trainer
        gc.collect()
        shutdown(wait=finished)


class _Trainer:
    """One run: :meth:`setup` (run directory, parts, resume), then the step loop (:meth:`_run`)."""

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
        self._build()
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
        self._open_metrics()

    def _build(self) -> None:
        """The run's parts (:func:`build_run`) as attributes, and the autocast and rank reduction."""
        p = build_run(self.cfg, self.info, self.data_paths)
        self.model_cfg, self.adapter, self.model, self.n_params, self.data = (p.model_cfg, p.adapter, p.model,
                                                                              p.n_params, p.data)
        self.targets, self.optimizer, self.schedule, self.objective = p.targets, p.optimizer, p.schedule, p.objective
        self.unit = self.adapter.unit_name
        self.autocast = lambda: autocast(self.info.device, self.cfg.train.precision)
        self.reduce = make_reducer(self.info)

    def _open_metrics(self) -> None:
        """``run_config.json``, the metrics writer (and W&B) and the run's start record."""
        cfg, info = self.cfg, self.info
        if info.is_main:
            # The data paths as absolute paths, so that resuming needs no data_paths.
            data = dataclasses.replace(cfg.data, paths=[absolute_path(p) for p in self.data.paths])
            save_run_config(dataclasses.replace(cfg, model_config=self.model_cfg, data=data),
                            self.run_dir / RUN_CONFIG)
        self.metrics = MetricsWriter.for_run(self.run_dir, cfg.logging, info.is_main, self.run_dir / RUN_CONFIG)
        self.metrics.write({"kind": "resume" if self.resume else "start", "step": self.step, "unit": self.unit,
                            "modality": cfg.modality.name, "world_size": info.world,
                            "backend": info.backend, "device": str(info.device), "params": self.n_params,
                            "target_compression": self.targets, "steps": cfg.train.steps,
                            "unknown": self.data.unknown_stats})

    def _load(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir)
        self.step, progress = ckpt.load_run(path, self.model, self.optimizer, self.schedule, self.data,
                                            self.model_cfg, self.info)
        self.units_seen = float(progress.get("units_seen", 0.0))
        self.flops_seen = float(progress.get("flops_seen", 0.0))
        self.elapsed_before = float(progress.get("elapsed_s", 0.0))
        self.first_eval = progress.get("first_heldout")
        self.last_checkpoint = path
        if self.info.is_main:
            truncate_metrics(self.run_dir, self.step)

    # ---- pieces --------------------------------------------------------------------------
    def save(self) -> Path:
        progress = {"units_seen": self.units_seen, "flops_seen": self.flops_seen, "elapsed_s": self.elapsed(),
                    "first_heldout": self.first_eval}
        self.last_checkpoint = ckpt.save_run(self.run_dir, self.step, self.model, self.optimizer, self.schedule,
                                             self.data, self.model_cfg, self.cfg.modality, self.cfg.checkpoint.keep,
                                             self.info, progress)
        return self.last_checkpoint

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def run_eval(self) -> None:
        if not self.data.eval_batches:
            return
        model = self.model if self.cfg.train.parallel == "fsdp" and self.info.enabled else unwrap(self.model)
        # Stopped on one process: skip the rest (with several ranks every rank finishes it: it is collective).
        rec = evaluate(model, self.data.eval_batches, self.adapter, len(self.targets), self.data.eval_unscored,
                       self.info.device, self.autocast, self.reduce,
                       stopped=lambda: self.stop.signal is not None and not self.info.enabled)
        if rec is None:
            return
        rec = {"kind": "eval", "step": self.step, **rec,
               "units_seen": self.units_seen, "flops_seen": self.flops_seen, "elapsed_s": self.elapsed()}
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
        raise NonFiniteLoss.at(self.step, what, value, self.last_checkpoint)

    # ---- main ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.stop = StopFlag()
        keep_as_found = self.info.is_main and not self.resume
        found = entries(self.run_dir)
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
                if keep_as_found and getattr(self, "step", 0) == 0 and getattr(self, "last_checkpoint", None) is None:
                    restore(self.run_dir, found)  # a failed start leaves the directory as it was
                raise

    def _run(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        self.console = Console(cfg.train.steps, self.step, self.unit, cfg.logging.progress, cfg.logging.print_every,
                               enabled=info.is_main and not self.quiet)
        if self.resume:
            self.console.log(f"resumed from {self.last_checkpoint} at step {self.step}")
        elif self.afresh:
            self.console.log(f"resume: {self.run_dir} has no checkpoint yet; starting afresh")
        self.model.train()
        self.t_start = time.perf_counter()
        self.skipped_in_a_row = 0
        self.window = Window(time.perf_counter())
        self.head_out = head_out_features(self.model)
        if self.step == 0 and cfg.logging.eval_every:
            self.run_eval()
        while self.step < cfg.train.steps:
            self._log_step(self._train_step())
            self._between_steps()
        if cfg.logging.eval_every == 0 or self.step % cfg.logging.eval_every:
            self.run_eval()
        path = self.save() if cfg.checkpoint.at_end else self.last_checkpoint
        self.console.close()
        return TrainResult(self.run_dir, self.step, path, self.last_eval, self.unit, self.elapsed(), self.first_eval,
                           info.rank, self.last_unscored)

    def _train_step(self) -> _Step:
        """One step: batch → model → NLL → objective → backward → clip → AdamW (unless non-finite) → schedule."""
        cfg, info = self.cfg, self.info
        raw = self.data.next_batch()
        b = to_device(raw, self.adapter.input_key, info.device)
        with self.autocast():
            out = self.model(b.inputs, b.packing)
            nll = self.adapter.loss(out.logits, b.targets)
        self.step += 1
        if cfg.train.inject_nan_at_step == self.step:
            nll = nll * float("nan")
        flops = training_flops(self.model_cfg, stage_lengths(b.packing, out.routing), self.head_out)
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
        self.window.add(positions, flops)
        return _Step(obj, positions, grad_norm, lr, skipped)

    def _log_step(self, s: _Step) -> None:
        """A train record every ``logging.every`` steps and at the last; the console's line or bar."""
        cfg, info, obj = self.cfg, self.info, s.obj
        rec = None
        if cfg.logging.every and self.step % cfg.logging.every == 0 or self.step == cfg.train.steps:
            on_cuda = info.device.type == "cuda"
            if on_cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            dt = self.window.seconds(now)
            rec = {"kind": "train", "step": self.step, "loss": obj.total, "nll": obj.nll,
                   "bits_per_unit": obj.bits_per_unit, "ratio_loss": obj.ratio_losses,
                   "compression": obj.compression, "boundary_prob": obj.boundary_prob, "lr": s.lr,
                   "grad_norm": s.grad_norm, "units": obj.units, "positions": s.positions,
                   "units_seen": self.units_seen, "flops_seen": self.flops_seen,
                   "tokens_per_s": self.window.positions / dt, "elapsed_s": self.elapsed(), "skipped": s.skipped}
            if self.peak:
                rec["mfu"] = self.window.flops / (info.world * self.peak * dt)
            if on_cuda:
                rec["memory_gb"] = torch.cuda.max_memory_allocated(info.device) / 2 ** 30
            self.metrics.write(rec)
            self.window = Window(now)
        self.console.step(self.step, rec)

    def _between_steps(self) -> None:
        """Evaluate and checkpoint when due (their time is not the window's); on a signal, checkpoint
        and raise :class:`TrainingInterrupted`."""
        cfg, info = self.cfg, self.info
        stopping = any_rank(self.stop.signal is not None, info)
        t_pause = time.perf_counter()
        if cfg.logging.eval_every and self.step % cfg.logging.eval_every == 0 and not stopping:
            self.run_eval()
        if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and self.step < cfg.train.steps:
            self.save()
        self.window.paused += time.perf_counter() - t_pause
        if stopping:
            path = self.last_checkpoint if self.last_checkpoint and self.last_checkpoint.name == \
                ckpt.step_dir_name(self.step) else self.save()
            self.console.close()
            name = signal.Signals(self.stop.signal).name if self.stop.signal else "signal"
            raise TrainingInterrupted(f"{name} at step {self.step}: checkpoint saved to {path}; continue with "
                                      f"resume=True run_dir={self.run_dir}", path, info.is_main)


__all__ = ["train"]
