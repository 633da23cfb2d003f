"""The measuring side of ``bench/profile_step.py``: a timed run of steps, the host↔device
synchronisations inside a block (real ones on CUDA, would-be ones on CPU) with their source lines,
one run under ``torch.profiler`` read back from its Chrome trace, and which ``hnet_seq`` tree ran.

A step is any zero-argument callable (the script's forward + backward + AdamW closure).
"""
from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import subprocess
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import hnet_seq
from _report import REPO_ROOT

HERE = Path(__file__).resolve()
OWN_FILES = {str(HERE), str(HERE.with_name("profile_step.py"))}  # the profiler's frames, never a sync site
TORCH_DIR = str(Path(torch.__file__).resolve().parent)
GPU_ACTIVITY = ("kernel", "gpu_memcpy", "gpu_memset")  # Chrome-trace categories of GPU work
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def time_steps(step, warmup: int, steps: int, device: torch.device):
    """Run ``warmup`` then ``steps`` steps; (milliseconds per timed step, last output).

    CUDA: synchronised around the timed steps, and the peak-memory counter is reset after the
    warm-up so that ``torch.cuda.max_memory_allocated()`` then covers the timed steps only.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    sync()
    return (time.perf_counter() - t0) / steps * 1e3, out


# -------------------------------------------------------------------------- counting syncs


def _call_site() -> str:
    """``path:line (function)`` of the innermost caller outside torch and the profiler (:data:`OWN_FILES`).

    Falls back to the innermost torch frame (e.g. the optimizer), and to the autograd engine
    when no Python frame is involved (a sync in the backward pass is reported after it).
    """
    frames = [f for f in reversed(traceback.extract_stack()[:-1])
              if f.filename[:1] != "<" and "/warnings.py" not in f.filename
              and str(Path(f.filename).resolve()) not in OWN_FILES]
    ours = [f for f in frames if not str(Path(f.filename).resolve()).startswith(TORCH_DIR)]
    if not (ours or frames):
        return "<autograd engine (backward) or C++>"
    frame = (ours or frames)[0]
    name = Path(frame.filename).resolve()
    for base in (Path(hnet_seq.__file__).resolve().parents[1], REPO_ROOT, Path(TORCH_DIR).parent):
        if name.is_relative_to(base):
            name = name.relative_to(base)
            break
    return f"{name}:{frame.lineno} ({frame.name})"


def _is_bool_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype == torch.bool


class WouldSyncCounter(TorchFunctionMode):
    """Counts calls that force a host↔device sync when their tensors live on a GPU.

    For CPU runs, where nothing syncs: each such call is recorded with its call site.
    """

    READS = {"item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy",
             "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "equal", "allclose"}

    def __init__(self):
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        syncs = name in self.READS
        if name in ("__getitem__", "__setitem__", "index_put_", "index_put") and len(args) > 1:
            index = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
            syncs = any(_is_bool_tensor(i) for i in index)  # boolean mask → implicit nonzero
        elif name == "repeat_interleave":
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0] if args else None)
            syncs = isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
        elif name == "bincount":
            syncs = kwargs.get("minlength", 0) == 0 and len(args) < 3
        if syncs:
            self.sites[f"{name}: {_call_site()}"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_syncs(device: torch.device):
    """Yields a Counter ``{"op: site": n}`` of host↔device syncs inside the block.

    CUDA: the syncs CUDA reports (``set_sync_debug_mode("warn")``), located by the Python stack
    at the moment of the warning.  CPU: :class:`WouldSyncCounter`.
    """
    if device.type != "cuda":
        counter = WouldSyncCounter()
        with counter:
            yield counter.sites
        return
    sites: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            sites[f"sync: {_call_site()}"] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


# ----------------------------------------------------------------------------- the profile


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _op_rows(prof, key: str, steps: int, limit: int) -> list[dict]:
    """Top ops of ``prof.key_averages()`` by ``key`` ("device" or "cpu" self time), per step."""
    def self_ms(e, which):
        names = ("self_device_time_total", "self_cuda_time_total") if which == "device" else ("self_cpu_time_total",)
        return next((getattr(e, n) for n in names if hasattr(e, n)), 0.0) / 1e3 / steps

    events = sorted(prof.key_averages(), key=lambda e: self_ms(e, key), reverse=True)
    return [dict(op=e.key[:100], calls_per_step=e.count / steps, self_ms_per_step=round(self_ms(e, key), 3),
                 **({"self_cpu_ms_per_step": round(self_ms(e, "cpu"), 3)} if key == "device" else {}))
            for e in events[:limit] if self_ms(e, key) > 0]


def profile_steps(step, steps: int, out_dir: Path | None, device: torch.device, limit: int = 15) -> dict:
    """Run ``steps`` steps under ``torch.profiler``; ops tables, kernel counts and GPU busy time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            with record_function("train_step"):
                step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        trace = json.loads(raw.read_text())
        if out_dir is not None:
            with raw.open("rb") as src, gzip.open(out_dir / "trace.json.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    step_ranges = [(e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "user_annotation" and e.get("name") == "train_step"]
    gpu = [e for e in events if e.get("cat") in GPU_ACTIVITY]
    kernels_ = [e for e in gpu if e.get("cat") == "kernel"]
    durations = sorted(e["dur"] for e in kernels_)
    in_steps = lambda e: any(a <= e["ts"] <= b for a, b in step_ranges)  # noqa: E731
    result = dict(
        profiled_step_ms=sum(b - a for a, b in step_ranges) / 1e3 / steps,
        top_cpu_ops=_op_rows(prof, "cpu", steps, limit),
        profiler_sync_calls_per_step=sum(1 for e in events if e.get("name") in SYNC_CALLS and in_steps(e)) / steps,
    )
    if device.type == "cuda":
        result.update(
            top_device_ops=_op_rows(prof, "device", steps, limit),
            kernels_per_step=len(kernels_) / steps,
            median_kernel_us=durations[len(durations) // 2] if durations else 0.0,
            short_kernel_share=sum(d < 10 for d in durations) / max(len(durations), 1),
            gpu_busy_ms_per_step=_union_length([(e["ts"], e["ts"] + e["dur"]) for e in gpu]) / 1e3 / steps,
        )
    return result


# -------------------------------------------------------------------------- which tree ran


def source_tree() -> dict:
    """Which ``hnet_seq`` ran: its directory, git commit and whether it has local changes."""
    package = Path(hnet_seq.__file__).resolve().parent
    info = {"hnet_seq": str(package), "commit": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=30)

    try:
        top = git("rev-parse", "--show-toplevel")
        # A copy of the package inside another checkout (e.g. an ignored runs/ folder) is not that commit.
        if top.returncode == 0 and Path(top.stdout.strip()).resolve() == package.parent:
            head = git("rev-parse", "HEAD")
            info["commit"] = head.stdout.strip()
            info["dirty"] = bool(git("status", "--porcelain", "--", ".").stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info
