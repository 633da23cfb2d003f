"""Progress of long jobs on stderr: a rich bar on a terminal, plain lines every N seconds elsewhere.

On a terminal the bar shows done/total, the rate and the ETA.  Without one (SLURM logs, nohup,
a pipe) a bar would only write control codes, so one plain line is printed every
``$HNET_SEQ_PROGRESS_SECONDS`` seconds instead (default 30; 0 prints at every update), e.g.::

    score: 12,345,678/63,025,520 bases (19.6%), 123,456/s, elapsed 0:01:40, ETA 0:06:50

Torch-free, so that the CLI can import it at no cost.
"""
from __future__ import annotations

import os
import sys
import time

from hnet_seq.errors import UserError

INTERVAL_ENV = "HNET_SEQ_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def plain_interval() -> float:
    """Seconds between plain progress lines (``$HNET_SEQ_PROGRESS_SECONDS``, default 30)."""
    value = os.environ.get(INTERVAL_ENV, "").strip()
    if not value:
        return DEFAULT_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"{INTERVAL_ENV}={value}: expected a number of seconds >= 0 (default {DEFAULT_INTERVAL:g})")
    return seconds


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta_seconds(done: float, total: float | None, elapsed: float) -> float | None:
    """Time left at the average rate so far (None without a total or before any progress)."""
    if not total or done <= 0:
        return None
    return max(total - done, 0.0) * elapsed / done


def progress_bar(enabled: bool, description: str, total: float | None = None, unit: str = "units"):
    """A context manager with ``advance(n)``: a rich bar on a terminal, plain lines otherwise,
    nothing when ``enabled`` is False.  ``total`` (same unit as ``advance``) gives the bar its
    end and the ETA; without it the count and rate are shown."""
    if not enabled:
        return _NoProgress()
    if not sys.stderr.isatty():
        return _PlainProgress(description, total, unit, plain_interval())
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    count = "{task.completed:,.0f}" + ("/{task.total:,.0f}" if total else "") + f" {unit}"
    bar = Progress(TextColumn(f"[bold]{escape(description)}[/]"), BarColumn(bar_width=24), TextColumn(count),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    return _RichProgress(bar, total)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: float = 1, **fields) -> None:
        pass


class _RichProgress:
    def __init__(self, bar, total):
        self.bar, self.total, self._t0, self._done = bar, total, time.perf_counter(), 0.0
        self.task = bar.add_task("", total=total, rate="")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def advance(self, n: float = 1, **fields) -> None:
        self._done += n
        dt = max(time.perf_counter() - self._t0, 1e-9)
        self.bar.update(self.task, advance=n, rate=f"{self._done / dt:,.0f}/s", **fields)


class _PlainProgress:
    """One line every ``interval`` seconds (and none for jobs shorter than that)."""

    def __init__(self, description: str, total: float | None, unit: str, interval: float):
        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.done = 0.0
        self._t0 = self._last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: float = 1, **fields) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(now - self._t0), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        text = f"{self.description}: {self.done:,.0f}"
        if self.total:
            text += f"/{self.total:,.0f} {self.unit} ({100 * self.done / self.total:.1f}%)"
        else:
            text += f" {self.unit}"
        text += f", {self.done / max(elapsed, 1e-9):,.0f}/s, elapsed {clock(elapsed)}"
        left = eta_seconds(self.done, self.total, elapsed)
        return text + (f", ETA {clock(left)}" if left is not None else "")


__all__ = ["DEFAULT_INTERVAL", "INTERVAL_ENV", "clock", "eta_seconds", "plain_interval", "progress_bar"]
