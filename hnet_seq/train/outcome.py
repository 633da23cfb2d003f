"""How a run of :func:`hnet_seq.train.train` ends: its :class:`TrainResult`, or one of the two
ways it stops early (a non-finite loss, a signal), and the flag a signal sets.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


class NonFiniteLoss(UserError):
    """The loss or gradient norm became NaN/inf; the message names the step and the last good checkpoint."""

    @classmethod
    def at(cls, step: int, what: str, value: float, last: Path | None) -> "NonFiniteLoss":
        where = (f"last good checkpoint: {last} (resume=True continues from it)" if last
                 else "no checkpoint was written before it")
        return cls(f"step {step}: {what} is {value}; training stopped, {where}; "
                   "try a lower optim.lr or train.on_nonfinite=skip", params=("resume",))


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


class StopFlag:
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


__all__ = ["NonFiniteLoss", "StopFlag", "TrainResult", "TrainingInterrupted"]
