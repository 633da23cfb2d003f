"""Shared helpers for the bench scripts: CUDA timing, markdown tables, and docs sections.

A bench script measures, builds a markdown block, and calls :func:`write_section` to replace
its own marked section of ``docs/benchmarks.md`` (``<!-- NAME:begin -->`` … ``<!-- NAME:end -->``),
leaving every other section as it was.
"""
from __future__ import annotations

import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"


def require_cuda(script: str) -> None:
    """Exit with a clear message when no CUDA device is visible."""
    if not torch.cuda.is_available():
        sys.exit(f"{script}: needs a CUDA GPU (torch.cuda.is_available() is False); "
                 "nothing was measured and docs/benchmarks.md was not changed.")


def cuda_time_ms(fn: Callable[[], object], *, warmup: int = 3, iters: int = 10) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def device_description() -> str:
    """``NVIDIA H100 80GB HBM3, torch 2.x, CUDA 12.x`` for the current device."""
    return (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}")


def command_line() -> str:
    """The command that ran this script, relative to the repository root where possible."""
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO_ROOT))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


def write_section(path: str | Path, marker: str, markdown: str) -> Path:
    """Put ``markdown`` between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in ``path``.

    The section is replaced when present, appended otherwise; the file is created (with a
    title) when missing.  Returns the path written.
    """
    path = Path(path)
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
