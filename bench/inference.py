"""Inference throughput: ``embed`` (bp/s) and ``score-variants`` (variants/s at 8 kb windows).

    python bench/inference.py                       # GPU: ~100M-param 1-stage DNA H-Net, writes docs
    python bench/inference.py --batch-tokens 65536 262144   # + pooled embed / SNV rows at a larger batch
    python bench/inference.py --size tiny --device cpu --no-write      # CPU smoke run (1-2 min on 2 cores)
    python bench/inference.py --rss-fasta ../shared/data/dna/klebsiella_*.fna.gz   # + peak RSS (tiny model)
    python bench/inference.py --device cpu --rss-only --rss-size micro --rss-fasta F.fna.gz --write
    python bench/inference.py --shared-only --json shared.json   # only the shared-prefix/saturation rows

The model is the paper-style 1-stage DNA H-Net at ~100M parameters (``m4 [T12] m4``, widths
512/768, DNA vocabulary), randomly initialised; its router is first brought to a compression of
3 bases per chunk with the ratio loss alone, so that the inner network sees the number of
chunks a trained model would give it.  Throughput is that of the Python API the commands call
(``hnet_seq.inference.embed`` / ``score_variants``), end to end: reading, tiling, packing,
forward passes, reductions and parquet/TSV writing; the model is loaded before timing and
every measurement is preceded by a warm-up run.  Variants are SNVs at random positions of the
real reference (REF from the reference), each ALT in its own centred window of ``--window``
bases, so a variant costs two windows (four with ``--rc-average``); the "3 ALTs per site" rows
score every other base at each site, which shares the REF window.  ``--rss-fasta`` also embeds
those FASTA files with ``--chunks`` through the CLI in a child process and reports its peak RSS
(``--rss-max-bp`` keeps the first N bases of every record when the CPU is too slow for all of them),
with ``--rss-window`` (default 8192, the CLI's).  "forward only" rows run the same packed
tiles/windows through the inference runner with nothing written: the ceiling that reading,
tiling and writing leave room for.  The shared-prefix rows (:func:`measure_shared`) score the same
SNVs with ``share_prefix`` on and off, and saturation mutagenesis of ``--saturate-bp`` bases mid-way
along the longest record (3 SNVs per base), each beside its full recomputation.

Results go to the ``inference`` section of ``docs/benchmarks.md`` (on CUDA, or with ``--write``).
A run without ``--rss-fasta`` keeps the peak-RSS paragraphs already there (they come from a CPU
run), and ``--rss-only --write`` replaces only those.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hnet_seq.runtime.atomic import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent))
from _inference_measure import PACKAGED, build_model, measure_rss, measure_shared, measure_throughput  # noqa: E402
from _inference_report import write_docs  # noqa: E402
from _report import command_line  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["100m", "tiny", "micro"], default=None,
                    help="default: 100m on CUDA, tiny on CPU")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fasta", type=Path, nargs="*", default=[PACKAGED], help="real DNA to embed and place variants on")
    ap.add_argument("--embed-mbp", type=float, default=None, help="bases embedded per measurement (default 16 on "
                    "CUDA, 0.01 on CPU)")
    ap.add_argument("--chunks-mbp", type=float, default=None, help="bases embedded with --chunks (default 2 on "
                    "CUDA, 0.01 on CPU: a 768-wide vector per chunk is ~0.8 GB of parquet per Mbp)")
    ap.add_argument("--variants", type=int, default=None, help="variant sites (default 1000 on CUDA, 6 on CPU)")
    ap.add_argument("--window", type=int, default=None, help="window (default 8192; 512 for the CPU smoke run)")
    ap.add_argument("--batch-tokens", type=int, nargs="+", default=[None], help="positions per packed batch "
                    "(default: the commands' default); further values also measure pooled embedding and SNV "
                    "scoring at those batch sizes")
    ap.add_argument("--tune-steps", type=int, default=None)
    ap.add_argument("--rss-fasta", type=Path, nargs="*", default=[], help="also measure peak RSS embedding these")
    ap.add_argument("--rss-max-bp", type=int, default=None, help="subsample: first N bases of every record")
    ap.add_argument("--rss-size", choices=["100m", "tiny", "micro"], default="tiny", help="model for the RSS run")
    ap.add_argument("--rss-window", type=int, default=8192, help="--window of the RSS run (the CLI default)")
    ap.add_argument("--rss-only", action="store_true", help="only the peak-RSS run (no throughput)")
    ap.add_argument("--from-json", type=Path, default=None, help="write docs from figures saved by --json")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md even on CPU")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also dump the raw figures here")
    ap.add_argument("--shared-only", action="store_true", help="only the shared-prefix and saturation rows "
                    "(printed and in --json; docs are written by a full run)")
    ap.add_argument("--saturate-bp", type=int, default=None, help="saturation region (default 1000; 40 on CPU)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("bench/inference.py: --device cuda but no CUDA device; use --device cpu --size tiny")
    tune = args.tune_steps if args.tune_steps is not None else (100 if cuda else 3)

    results = json.loads(args.from_json.read_text()) if args.from_json else None
    if results is None:
        results = {"embed": [], "variants": [], "rss": []}
        if not args.rss_only:
            measure_model(args, device, tune, results)
    if args.rss_fasta:
        rss_im = build_model(args.rss_size, device, tune)[0]
        r = measure_rss(rss_im, args.rss_fasta, window=args.rss_window, device=args.device, max_bp=args.rss_max_bp)
        names = ", ".join(p.name for p in args.rss_fasta)
        r.update(input=f"first {args.rss_max_bp:,} bp of every record of {names}" if args.rss_max_bp else names,
                 model=args.rss_size, window=args.rss_window, params=sum(p.numel() for p in rss_im.model.parameters()),
                 device=torch.cuda.get_device_name() if cuda else "cpu")
        results["rss"].append(r)
        print("rss", json.dumps(r), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    if args.no_write or args.shared_only or not (cuda or args.write):
        return
    write_docs(results)


def measure_model(args, device: torch.device, tune: int, results: dict) -> None:
    """Build the throughput model, then its rows (all of them, or the shared-prefix ones with
    ``--shared-only``) into ``results``; sizes default to the GPU run's or the CPU smoke run's."""
    cuda = device.type == "cuda"
    size = args.size or ("100m" if cuda else "tiny")
    window = args.window or (8192 if cuda else 512)
    embed_bp = int((args.embed_mbp or (16 if cuda else 0.01)) * 1e6)
    n_var = args.variants or (1000 if cuda else 6)
    chunks_bp = int((args.chunks_mbp or (2 if cuda else 0.01)) * 1e6)
    t0 = time.perf_counter()
    im, cfg, ratio = build_model(size, device, tune)
    params = sum(p.numel() for p in im.model.parameters())
    print(f"model: {size}, {params / 1e6:.1f}M params, compression {ratio} (router tuned {tune} steps, "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    results["model"] = dict(size=size, params=params, compression=ratio, window=window,
                            device=torch.cuda.get_device_name() if cuda else "cpu", precision=im.precision,
                            config=cfg.to_dict(), command=command_line())
    args.saturate_bp = args.saturate_bp or (1000 if cuda else 40)
    if not args.shared_only:
        measure_throughput(im, args, results, window=window, embed_bp=embed_bp, chunks_bp=chunks_bp, n_var=n_var)
    measure_shared(im, args, results, window=window, n_var=n_var)


if __name__ == "__main__":
    main()
