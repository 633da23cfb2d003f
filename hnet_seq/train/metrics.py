"""What a run reports: ``RUN_DIR/metrics.jsonl``, optional TensorBoard, and the console.

``metrics.jsonl`` has one JSON object per line, each with ``kind``:

* ``start`` / ``resume``: the run's unit (``base``, ``byte``, ``sample``), world size, device;
* ``train`` (every ``logging.every`` steps): ``step``, ``loss`` (the whole objective), ``nll``
  (nats per unit), ``bits_per_unit``, ``ratio_loss`` and ``compression`` (positions per chunk)
  and ``boundary_prob`` per stage, ``lr``, ``grad_norm``, ``units`` and ``positions`` in the
  step (all ranks), ``units_seen`` and ``flops_seen`` (running totals since step 0: units in the
  loss and training FLOPs of :func:`hnet_seq.flops.training_flops`), ``tokens_per_s``, ``mfu``
  (CUDA), ``elapsed_s``, ``skipped``;
* ``eval``: ``step``, ``bits_per_unit`` on held-out data, ``compression`` per stage, ``units``,
  and the running ``units_seen`` / ``flops_seen`` (so curves can be drawn against data or compute).

On resume the lines past the checkpoint's step are dropped, so the file always describes
one consistent history.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_text
from ..errors import UserError

METRICS = "metrics.jsonl"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of ``RUN_DIR/metrics.jsonl`` (a torn last line, from a kill, is skipped)."""
    path = Path(run_dir) / METRICS
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Keep only the records up to ``step`` (what a resumed run continues from)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    """A record's numbers as ``{"kind/key": value}``, per-stage lists as ``kind/key_stage1, ...``
    (stage 1 = the first router, as every other output numbers them)."""
    kind, out = record.get("kind", "train"), {}
    for key, value in record.items():
        if key in ("step", "kind"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{kind}/{key}"] = value
        elif isinstance(value, list):
            out.update({f"{kind}/{key}_stage{i + 1}": v for i, v in enumerate(value)
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


class WandbLogger:
    """Mirror of the metrics to Weights & Biases through the ``wandb`` library (``logging.wandb``).

    The run's W&B id is kept in ``RUN_DIR/wandb_id``, so a resumed run continues the same
    W&B run; W&B's own files go to ``RUN_DIR/wandb``.  ``mode`` is W&B's: ``online`` or
    ``offline`` (synced later with ``wandb sync``).
    """

    def __init__(self, run_dir: Path, project: str, mode: str, config: dict | None = None):
        try:
            import wandb
        except ImportError:
            raise UserError("logging.wandb needs the wandb package (pip install wandb)") from None
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None  # None: W&B makes one
        self.run = wandb.init(project=project, id=run_id, resume="allow", name=run_dir.name, dir=str(run_dir),
                              mode=mode, config=config)
        atomic_write_text(id_file, self.run.id + "\n")

    def log(self, record: dict[str, Any]) -> None:
        if "step" in record:
            self.run.log(_scalars(record), step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


@dataclass
class Window:
    """What the steps since the last train record did, for its throughput and MFU: wall time from
    ``start`` less ``paused`` (evaluation, checkpoints), positions and FLOPs (all ranks)."""

    start: float
    positions: float = 0.0
    flops: float = 0.0
    paused: float = 0.0

    def add(self, positions: float, flops: float) -> None:
        self.positions += positions
        self.flops += flops

    def seconds(self, now: float) -> float:
        return max(now - self.start - self.paused, 1e-9)  # eval and checkpoint time excluded


class MetricsWriter:
    """Appends records to ``metrics.jsonl`` (flushed per line) and mirrors scalars to TensorBoard
    and (``wandb``: a :class:`WandbLogger`) to Weights & Biases."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False,
                 wandb: "WandbLogger | None" = None):
        self.enabled = enabled
        self.file = open(Path(run_dir) / METRICS, "a") if enabled else None
        self.wandb = wandb
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("warning: logging.tensorboard needs the tensorboard package (pip install tensorboard)",
                      file=sys.stderr)
            else:
                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    @classmethod
    def for_run(cls, run_dir: Path, logging, enabled: bool, run_config: Path) -> "MetricsWriter":
        """The writer a run's ``logging`` section asks for; W&B gets the run's config (``run_config``: its JSON)."""
        wandb = None
        if logging.wandb and enabled:
            wandb = WandbLogger(run_dir, logging.wandb_project, logging.wandb_mode, json.loads(run_config.read_text()))
        return cls(run_dir, enabled=enabled, tensorboard=logging.tensorboard, wandb=wandb)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self.file.flush()
        if self.tb is not None and "step" in record:
            for tag, value in _scalars(record).items():
                self.tb.add_scalar(tag, value, record["step"])
        if self.wandb is not None:
            self.wandb.log(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.close()
            self.wandb = None


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def summary_line(rec: dict, unit: str, last_eval: float | None) -> str:
    """``loss 1.234 | 1.91 bits/base | 12.3k base/s | ratio 3.1 | held-out 1.90``."""
    parts = [f"loss {rec['loss']:.4f}", f"{rec['bits_per_unit']:.3f} bits/{unit}",
             f"{_si(rec.get('tokens_per_s', 0.0))} pos/s"]
    if rec.get("compression"):
        parts.append("ratio " + "/".join(f"{c:.2f}" for c in rec["compression"]))
    if rec.get("mfu") is not None:
        parts.append(f"MFU {100 * rec['mfu']:.1f}%")
    if last_eval is not None:
        parts.append(f"held-out {last_eval:.3f} bits/{unit}")
    return " | ".join(parts)


class Console:
    """Rank 0's view of training: a rich bar on a terminal, else plain lines.

    The bar fits 80 columns: ``train ━━━━ step 120/1000 0:01:10 ETA 0:08:20 1.910 bits/base``
    (about 75 with a million steps; held-out results are lines above it, the rest is in
    metrics.jsonl; on a narrower terminal the tail is cut, never wrapped).  Plain lines (SLURM logs, nohup)
    come every ``print_every`` steps when set, else every ``$HNET_SEQ_PROGRESS_SECONDS`` seconds
    (default 30), each with step/total and the ETA.
    """

    def __init__(self, total: int, start: int, unit: str, mode: str = "auto", print_every: int = 0,
                 enabled: bool = True):
        from hnet_seq.progress import plain_interval

        self.unit, self.enabled, self.total, self.start = unit, enabled, total, start
        is_tty = sys.stderr.isatty()
        self.use_bar = enabled and (mode == "on" or (mode == "auto" and is_tty))
        self.print_every = print_every
        self.seconds = plain_interval() if enabled and not self.use_bar and not print_every else None
        self.last_eval: float | None = None
        self.progress = None
        self._t0 = self._last = time.monotonic()
        if self.use_bar:
            from rich.console import Console as RichConsole
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.table import Column

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(bar_width=12), TextColumn("step {task.completed}/{task.total}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=RichConsole(stderr=True), transient=False)
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def log(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def step(self, step: int, rec: dict | None) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            info = f"{rec['bits_per_unit']:.3f} bits/{self.unit}" if rec else ""
            self.progress.update(self.task, completed=step, **({"info": info} if rec else {}))
            return
        now = time.monotonic()
        due = (step % self.print_every == 0) if self.print_every else now - self._last >= self.seconds
        if rec and due:
            self._last = now
            self.log(self.plain_line(step, now - self._t0) + ": " + summary_line(rec, self.unit, self.last_eval))

    def plain_line(self, step: int, elapsed: float) -> str:
        """``step 120/1000 (12.0%), elapsed 0:01:10, ETA 0:08:20`` (ETA from this session's steps)."""
        from hnet_seq.progress import clock, eta_seconds

        text = f"step {step}/{self.total} ({100 * step / max(self.total, 1):.1f}%), elapsed {clock(elapsed)}"
        left = eta_seconds(step - self.start, self.total - self.start, elapsed)
        return text + (f", ETA {clock(left)}" if left is not None else "")

    def eval(self, step: int, bpu: float, compression: list[float]) -> None:
        self.last_eval = bpu
        ratio = (" | ratio " + "/".join(f"{c:.2f}" for c in compression)) if compression else ""
        self.log(f"step {step}: held-out {bpu:.4f} bits/{self.unit}{ratio}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


__all__ = ["METRICS", "Console", "MetricsWriter", "Window", "read_metrics", "summary_line", "truncate_metrics"]
