"""CPU training steps on the reference kernels: the tiny configs must do several steps per second.

    nice python bench/reference_cpu.py              # prints, and writes the "reference_cpu" section
    nice python bench/reference_cpu.py --no-write

One step is forward + backward + AdamW of a model on one packed batch, with the reference
kernels and one torch thread (on a shared 2-core CPU one thread is several times faster than
two).  Cases: ``tiny_1stage.json`` (SSD chunk size 16, the issue's slow case) on 8 windows of
512 bytes, and the model and batch of the ``bytes-tiny`` and ``audio-tiny`` presets.  The
median of ``--steps`` timed steps after one warm-up step is reported.  Target: at least 2
steps/s for both presets.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCHMARKS_MD, command_line, markdown_table, write_section  # noqa: E402

from hnet_seq import Packing, load_config  # noqa: E402
from hnet_seq.checkpoint import build_model  # noqa: E402
from hnet_seq.train import load_run_config  # noqa: E402
from hnet_seq.train.data import default_paths  # noqa: E402

MARKER = "reference_cpu"
TARGET_STEPS_PER_S = 2.0


def cases():
    """(name, model config, modality name, options, window length, windows per batch)."""
    root = Path(__file__).resolve().parents[1]
    yield "tiny_1stage.json", load_config(root / "configs" / "tiny_1stage.json"), "bytes", {}, 512, 8
    for preset in ("bytes-tiny", "audio-tiny"):
        run = load_run_config(preset)
        d = run.data
        yield (preset, run.model_config, run.modality.name, run.modality.options, d.seq_len,
               d.tokens_per_batch // d.seq_len)


def time_steps(cfg, modality: str, options: dict, length: int, windows: int, steps: int) -> float:
    """Median seconds of one training step on ``windows`` windows of ``length`` positions."""
    torch.manual_seed(0)
    model, adapter = build_model(cfg, modality, options)
    model.init_weights()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Real inputs: the modality's shipped default data, repeated to fill the batch.
    arrays = adapter.example_arrays(next(iter(adapter.read_records(default_paths(adapter)))))
    T = length * windows
    rows = torch.arange(T) % len(arrays["inputs"])
    inputs, targets = (torch.from_numpy(arrays[k])[rows] for k in ("inputs", "targets"))
    inputs = inputs.float() if inputs.is_floating_point() else inputs.long()
    targets = targets.long()
    packing = Packing.from_lengths([length] * windows)

    def step() -> None:
        out = model(inputs, packing)
        adapter.loss(out.logits, targets).mean().backward()
        opt.step()
        opt.zero_grad()

    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, cfg, modality, options, length, windows in cases():
        s = time_steps(cfg, modality, options, length, windows, args.steps)
        rows.append([name, f"{windows} x {length}", f"{s:.3f}", f"{1 / s:.2f}"])
        print(f"{name}: {windows} x {length} positions, {s:.3f} s/step, {1 / s:.2f} steps/s", flush=True)
    md = (f"## Reference kernels on CPU: training steps (`bench/reference_cpu.py`)\n\n"
          f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s), torch "
          f"{torch.__version__}; median of {args.steps} steps (forward + backward + AdamW), reference kernels. "
          f"Target: {TARGET_STEPS_PER_S:g} steps/s for the tiny presets.\n\n"
          + markdown_table(["model", "batch (windows x positions)", "s/step", "steps/s"], rows)
          + f"\n\nReproduce: `{command_line()}`\n")
    if not args.no_write:
        print(f"wrote {write_section(BENCHMARKS_MD, MARKER, md)}")


if __name__ == "__main__":
    main()
