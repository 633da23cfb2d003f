"""Run a small graph of jobs on one GPU: each job starts as soon as the jobs it needs have ended.

A bench with phases (sweep, then main runs at the sweep's best learning rate, then scoring) that
waits for a whole phase leaves the GPU half idle while the slowest runs of a phase finish.  Here
a model's main run starts when that model's own sweep is over, and its scoring when its main run
is, so the GPU stays full and the wall time is that of the longest chain, not the sum of the
slowest run of every phase.

A job is prepared (its spec built from what has finished) when it becomes ready, then run in this
process (``workers == 0``) or as a child process, at most ``workers`` at once.  A child that ends
in a CUDA out-of-memory error is run again once, later, when at most half as many children are
running as were beside it when it failed (the GPU was full, the run was not broken); no new job
starts beside more children than that failure had.  Restarting it beside the same number of runs
failed again on the H200 (2026-12-02: a 2-stage H-Net beside 14 runs, twice).
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory")


@dataclass
class Job:
    """One unit of work; ``prepare() -> bool`` builds its inputs when ``after`` have ended (False:
    nothing to do), then ``run_here()`` or the child ``argv`` does it."""

    id: str
    after: tuple[str, ...]
    prepare: Callable[[], bool]
    finished: Callable[[], bool]  # done by an earlier launch: skipped
    argv: list[str]
    run_here: Callable[[], None]
    log: Path
    state: str = field(default="waiting")  # waiting, running, done, failed, skipped
    max_beside: int | None = None  # after an out-of-memory failure: start only beside this many


def out_of_memory(log: Path) -> bool:
    """Whether ``log`` ends in a CUDA out-of-memory error."""
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    return any(marker in tail for marker in OOM_MARKERS)


def _ready(job: Job, jobs: dict[str, Job]) -> bool:
    """Every job ``job`` waits for has ended (jobs outside the graph count as ended)."""
    return job.state == "waiting" and all(jobs[a].state in ("done", "failed", "skipped") for a in job.after if a in jobs)


def run_jobs(jobs: list[Job], workers: int, *, cwd: Path, tick: Callable[[], None] = lambda: None,
             poll_s: float = 10.0) -> dict[str, str]:
    """Run the graph; returns ``{id: final state}``."""
    by_id = {j.id: j for j in jobs}
    # expandable segments: many processes on one GPU fragment less; Triton's autotuning results on
    # disk: a main run reuses the kernel configs its model's sweep runs tuned instead of tuning again
    env = os.environ | {"PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),
                        "TRITON_CACHE_AUTOTUNING": os.environ.get("TRITON_CACHE_AUTOTUNING", "1")}
    running: list[tuple[Job, subprocess.Popen]] = []
    cap, retried = max(workers, 1), set()
    while any(j.state in ("waiting", "running") for j in jobs):
        for job in [j for j in jobs if _ready(j, by_id)]:
            if workers and len(running) >= cap:
                break
            if job.max_beside is not None and len(running) > job.max_beside:
                continue
            if not job.prepare():  # nothing to do (e.g. no sweep run of the model finished)
                job.state = "skipped"
                continue
            if job.finished():  # by an earlier launch of the bench
                job.state = "done"
                continue
            job.state = "running"
            tick()
            if not workers:
                job.run_here()
                job.state = "done"
                continue
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with open(job.log, "a") as log:
                running.append((job, subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)))
        tick()
        if running:
            time.sleep(poll_s)
        for job, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((job, proc))
            job.state = "done" if proc.returncode == 0 else "failed"
            if job.state == "failed" and job.id not in retried and out_of_memory(job.log):
                retried.add(job.id)
                cap, job.state, job.max_beside = max(1, len(running)), "waiting", len(running) // 2
                print(f"{job.id}: out of GPU memory beside {len(running)} runs; again once at most {job.max_beside} run",
                      flush=True)
            elif job.state == "failed":
                print(f"{job.id}: failed (exit {proc.returncode}), see {job.log}", flush=True)
        if not running and not any(_ready(j, by_id) for j in jobs) and any(j.state == "waiting" for j in jobs):
            raise RuntimeError("job graph stuck: " + ", ".join(j.id for j in jobs if j.state == "waiting"))
    tick()
    return {j.id: j.state for j in jobs}
