"""Profile variant scoring: where shared-prefix scoring spends its time, beside full recomputation.

    python bench/profile_scoring.py --out DIR                 # GPU: the 100 M DNA H-Net, 8 kb windows
    python bench/profile_scoring.py --device cpu --size micro --variants 4 --window 512 --out DIR

Both modes score the same SNVs (``bench/inference.py``'s inputs: random sites of the packaged
genome, REF from the reference) through ``score_variants``; each is warmed up once, timed
once without the profiler, then run once under ``torch.profiler``.  Printed and written to
``DIR/summary.json``: wall time, variants/s, the GPU's busy time (hence its idle share), kernels
launched, and the top ops by self device time and by self CPU time.  The shared-prefix path's
forward work runs in ``HNetLM.prefill``; its ops that the full path lacks are the suspects.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _inference_measure import PACKAGED, build_model, timed, write_reference_and_vcf  # noqa: E402
from _profile import profile_steps  # noqa: E402
from _report import command_line  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="100m", choices=("100m", "tiny", "micro"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variants", type=int, default=64, help="SNVs per run (one ALT per site)")
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--rc-average", action="store_true", help="score both strands")
    ap.add_argument("--tune-steps", type=int, default=30, help="router tuning towards 3 bases per chunk")
    ap.add_argument("--out", type=Path, required=True, help="folder for summary.json")
    return ap.parse_args()


def profile_mode(im, vcf: Path, ref: Path, out: Path, args, share: bool) -> dict:
    from hnet_seq.inference.variants import score_variants

    def run():
        return score_variants(im, vcf, ref, out / f"scores-{share}.parquet", window=args.window,
                              rc_average=args.rc_average, progress=False, share_prefix=share)

    run()  # warm-up: kernels compiled and tuned for these shapes
    s, wall = timed(im.device, run)
    prof = profile_steps(run, 1, None, im.device)
    row = dict(share_prefix=share, variants=s.scored, windows=s.windows, seconds=wall,
               variants_per_s=s.scored / wall, **prof)
    if "gpu_busy_ms_per_step" in prof:
        row["gpu_idle_fraction"] = 1 - prof["gpu_busy_ms_per_step"] / prof["profiled_step_ms"]
    return row


def print_row(r: dict) -> None:
    mode = "shared prefix" if r["share_prefix"] else "full"
    print(f"== {mode}: {r['variants']} variants, {r['windows']} windows, {r['seconds']:.2f} s, "
          f"{r['variants_per_s']:.1f} variants/s")
    if "gpu_idle_fraction" in r:
        print(f"   GPU busy {r['gpu_busy_ms_per_step']:.0f} of {r['profiled_step_ms']:.0f} ms "
              f"(idle {100 * r['gpu_idle_fraction']:.0f}%), {r['kernels_per_step']:.0f} kernels")
    for key, title in (("top_device_ops", "self device time"), ("top_cpu_ops", "self CPU time")):
        print(f"   top ops by {title} (ms):")
        for op in r.get(key, []):
            print(f"   {op['self_ms_per_step']:10.2f}  {op['calls_per_step']:7.0f}×  {op['op']}")


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    im, _, ratio = build_model(args.size, torch.device(args.device), args.tune_steps)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ref, vcf = write_reference_and_vcf(PACKAGED, Path(d), args.variants, args.window, 1, 1)
        for share in (False, True):
            rows.append(profile_mode(im, vcf, ref, Path(d), args, share))
            print_row(rows[-1])
    device = torch.cuda.get_device_name() if im.device.type == "cuda" else "cpu"
    summary = dict(device=device, size=args.size, compression=ratio, window=args.window,
                   rc_average=args.rc_average, command=command_line(), rows=rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
