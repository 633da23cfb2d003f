"""Data pipeline throughput on this CPU, one process (DataLoader ``num_workers=0``).

Reads the real files in ``../shared/data`` and times each stage: reading + encoding records,
and cutting windows into packed batches.  Prints a table and writes it into
``docs/benchmarks.md`` between ``<!-- data:begin -->`` and ``<!-- data:end -->``.

    python bench/data.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCHMARKS_MD, REPO_ROOT, command_line, markdown_table, write_section  # noqa: E402

import torch  # noqa: E402

from hnet_seq.data import Corpus, WindowDataset, read_shards, write_shards  # noqa: E402
from hnet_seq.modalities import get_adapter  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data"


def best_of(repeats: int, fn: Callable[[], tuple[int, int]]) -> tuple[int, int, float]:
    """(records, units, fastest seconds) of ``repeats`` runs of ``fn() -> (records, units)``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        records, units = fn()
        times.append(time.perf_counter() - t)
    return records, units, min(times)


def read(adapter, paths, unit=len) -> Callable[[], tuple[int, int]]:
    def run():
        recs = list(adapter.read_records(paths))
        return len(recs), sum(unit(r) for r in recs)
    return run


def batches(corpus, window, budget, **kw) -> Callable[[], tuple[int, int]]:
    def run():
        n = units = 0
        for b in WindowDataset(corpus, window, budget, seed=0, **kw):
            n += len(b["ids"])
            units += int(b["cu_seqlens"][-1]) * corpus.adapter.units_per_position
        return n, units
    return run


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the fastest is reported")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench/data.py: shared data not found at {DATA}; nothing measured")
    torch.set_num_threads(1)
    dna, text = get_adapter("dna"), get_adapter("bytes")
    raw, mel = get_adapter("audio", sample_rate=16000), get_adapter("audio", sample_rate=16000, features="logmel")
    kleb = sorted((DATA / "dna").glob("klebsiella_*.fna.gz"))
    udhr, speech = [DATA / "text" / "udhr2"], [DATA / "audio"]
    r = args.repeats
    rows = []

    def row(name, unit, measured):
        records, units, secs = measured
        rows.append([name, f"{records:,}", f"{units:,} {unit}s", f"{secs:.2f}", f"{records / secs:,.0f}",
                     f"{units / secs / 1e6:,.2f} M"])
        print(" | ".join(rows[-1]), flush=True)

    row("dna: read 4 Klebsiella .fna.gz (bgzip) -> tokens + soft-mask", "base", best_of(r, read(dna, kleb)))
    corpus = Corpus(dna, dna.read_records(kleb))
    row("dna: 4096-bp windows -> packed batches (32k budget, RC aug.)", "base",
        best_of(r, batches(corpus, 4096, 32768, rc_augment=True)))
    row("bytes: read 388 UDHR files -> tokens", "byte", best_of(r, read(text, udhr)))
    corpus = Corpus(text, text.read_records(udhr))
    row("bytes: 1024-byte windows -> packed batches (16k budget)", "byte", best_of(r, batches(corpus, 1024, 16384)))
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(text, udhr, Path(tmp) / "s", max_shard_bytes=1 << 20)
        row("bytes: stream UDHR shards (shuffle buffer 64)", "byte",
            best_of(r, lambda: _count(read_shards(Path(tmp) / "s", shuffle_buffer=64))))
    row("audio: read 24 wav (8/16/48 kHz, mu-law) -> 16 kHz mono", "sample", best_of(r, read(raw, speech)))
    corpus = Corpus(raw, raw.read_records(speech))
    row("audio: raw 80-sample frames, 256-frame windows -> batches", "sample",
        best_of(r, batches(corpus, 256, 2048)))
    row("audio: read 24 wav + log-mel features (80 bins, 10 ms hop)", "frame",
        best_of(r, lambda: _mel_frames(mel, speech)))

    headers = ["pipeline stage", "records", "units", "seconds", "records/s", "units/s"]
    table = markdown_table(headers, rows)
    md = (f"## Data pipeline throughput (CPU, 1 process)\n\n{cpu_name()}, {torch.get_num_threads()} torch thread, "
          f"torch {torch.__version__}, Python {platform.python_version()}; fastest of {r} runs; "
          f"records are FASTA records / documents / files, or windows for the batch rows (corpus already in memory).\n\n{table}\n\n"
          f"Reproduce: `{command_line()}`")
    print("\n" + table)
    if not args.no_write:
        print(f"wrote {write_section(BENCHMARKS_MD, 'data', md)}")


def _count(records) -> tuple[int, int]:
    n = units = 0
    for rec in records:
        n, units = n + 1, units + len(rec)
    return n, units


def _mel_frames(adapter, paths) -> tuple[int, int]:
    recs = list(adapter.read_records(paths))
    return len(recs), sum(len(adapter.encode(rec)) for rec in recs)


if __name__ == "__main__":
    main()
