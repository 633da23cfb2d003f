"""The measurements of ``bench/inference.py``: the random router-tuned DNA model, and timed runs of
``embed``, the inference runner, ``score_variants``, saturation mutagenesis and the CLI's peak RSS.
``bench/long_window.py`` builds its model and embeds through here too."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's hnet_seq, installed or not

from hnet_seq.config import config_from_dict, load_config  # noqa: E402
from hnet_seq.model import HNetLM  # noqa: E402

DNA_100M = dict(arch_layout=["m4", ["T12"], "m4"], d_model=[512, 768], d_intermediate=[0, 2048], vocab_size=8,
                attn_cfg=dict(num_heads=[8, 12], rotary_emb_dim=[32, 32], window_size=[1023, -1]),
                target_compression=[3.0])
# For peak-RSS runs on CPU: Mamba-only, so the reference kernels stream 22 Mbp in minutes.
DNA_MICRO = dict(arch_layout=["m1", ["m2"], "m1"], d_model=[32, 64], d_intermediate=[0, 0], vocab_size=8,
                 ssm_cfg=dict(chunk_size=64, d_conv=4, d_state=16, expand=2, headdim=16),
                 attn_cfg=dict(num_heads=[2, 2], rotary_emb_dim=[8, 8], window_size=[-1, -1]),
                 target_compression=[3.0])
PACKAGED = ROOT / "hnet_seq" / "resources" / "shigella_sonnei_53G_plasmids.fa.gz"


def build_model(size: str, device: torch.device, tune_steps: int, seed: int = 0):
    """A random DNA model whose router is tuned to its target compression; returns (InferenceModel, cfg)."""
    from hnet_seq.inference.model import InferenceModel
    from hnet_seq.modalities import get_adapter

    torch.manual_seed(seed)
    if size == "100m":
        cfg = config_from_dict(DNA_100M)
    elif size == "micro":
        cfg = config_from_dict(DNA_MICRO)
    else:
        cfg = load_config(ROOT / "configs" / "tiny_1stage.json")
    adapter = get_adapter("dna")
    d = cfg.d_model[0]
    model = HNetLM(cfg, embeddings=adapter.make_embedding(d).to(device), lm_head=adapter.make_head(d).to(device),
                   device=device)
    model.init_weights()
    targets = list(cfg.target_compression or [3.0])
    from _router import tune_router

    from hnet_seq.nn.packing import Packing

    n, L = (8, 8192) if device.type == "cuda" else (2, 1024)
    tokens = torch.randint(0, 4, (n * L,), device=device)
    packing = Packing.from_lengths([L] * n, device=device)
    ratio = tune_router(model, tokens, packing, targets, steps=tune_steps, lr=2e-2)
    model.eval().requires_grad_(False)
    precision = "bfloat16" if device.type == "cuda" else "float32"
    im = InferenceModel(model, adapter, device, precision, f"random {size} (router tuned)")
    return im, cfg, ratio


def timed(device: torch.device, fn):
    """``(fn(), seconds)``, the device synchronised before and after (CUDA kernels run asynchronously)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def dna_records(paths: list[Path], total_bp: int):
    """Records of the FASTA files, repeated (with new ids) until ``total_bp`` bases."""
    from hnet_seq.modalities import get_adapter
    from hnet_seq.modalities.base import Record

    base = list(get_adapter("dna").read_records(paths))
    out, used, k = [], 0, 0
    while used < total_bp:
        r = base[k % len(base)]
        take = min(len(r), total_bp - used)
        out.append(Record(f"{r.id}#{k}", r.data[:take], {}))
        used += take
        k += 1
    return out


def bench_embed(im, records, *, window: int, chunks: bool, rc: bool, batch_tokens: int | None) -> dict:
    from hnet_seq.inference.embed import embed

    with tempfile.TemporaryDirectory() as d:
        if im.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        s, dt = timed(im.device, lambda: embed(im, out=Path(d) / "e.parquet", records=records, chunks=chunks,
                                               rc_average=rc, window=window, batch_tokens=batch_tokens, progress=False))
        size = sum(f.stat().st_size for f in Path(d).iterdir())
    bp = sum(len(r) for r in records)
    return dict(bp=bp, seconds=dt, bp_per_s=bp / dt, chunk_rows=s.chunk_rows, out_mb=size / 1e6,
                gpu_gib=torch.cuda.max_memory_allocated() / 2**30 if im.device.type == "cuda" else float("nan"))


def bench_forward(im, records, *, window: int, batch_tokens: int | None) -> dict:
    """Forward passes alone over the tiles of ``records`` (pooled capture, nothing written)."""
    from hnet_seq.inference.model import default_batch_tokens
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem, batches_by_budget, default_overlap, plan_tiles

    overlap = default_overlap(window)
    items = [WorkItem(torch.from_numpy(r.data[t.start:t.end]), t.own_start - t.start)
             for r in records for t in plan_tiles(len(r), window, overlap)]
    runner = Runner(im, pool_level=0)
    def drain():
        for _ in runner.stream(batches_by_budget(items, batch_tokens or default_batch_tokens(im.device))):
            pass

    _, dt = timed(im.device, drain)
    bp = sum(len(r) for r in records)
    return dict(bp=bp, positions=runner.positions, seconds=dt, bp_per_s=bp / dt, positions_per_s=runner.positions / dt)


def write_reference_and_vcf(fasta: Path, d: Path, n: int, window: int, seed: int,
                            alts_per_site: int) -> tuple[Path, Path]:
    """A plain reference FASTA (from the input) and a VCF of ``n`` SNV sites away from contig ends."""
    from hnet_seq.modalities import get_adapter
    from hnet_seq.modalities.dna import decode_tokens

    recs = [r for r in get_adapter("dna").read_records([fasta]) if len(r) > 2 * window + 10]
    ref = d / "ref.fa"
    with open(ref, "w") as f:
        for r in recs:
            f.write(f">{r.id}\n{decode_tokens(r.data)}\n")
    rng = np.random.default_rng(seed)
    weights = np.array([len(r) - 2 * window for r in recs], float)
    sites = []
    for _ in range(n):
        r = recs[rng.choice(len(recs), p=weights / weights.sum())]
        p = int(rng.integers(window, len(r) - window))
        refb = "ACGTN"[int(r.data[p])]
        if refb == "N":
            continue
        alts = [b for b in "ACGT" if b != refb]
        rng.shuffle(alts)
        sites.append((r.id, p + 1, refb, ",".join(alts[:alts_per_site])))
    sites.sort(key=lambda s: ([x.id for x in recs].index(s[0]), s[1]))
    vcf = d / "sites.vcf"
    with open(vcf, "w") as f:
        f.write("##fileformat=VCFv4.2\n" + "".join(f"##contig=<ID={r.id},length={len(r)}>\n" for r in recs))
        f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for i, (c, p, a, b) in enumerate(sites):
            f.write(f"{c}\t{p}\tv{i}\t{a}\t{b}\t.\t.\t.\n")
    return ref, vcf


def bench_variants(im, fasta: Path, *, n: int, window: int, rc: bool, alts_per_site: int,
                   batch_tokens: int | None, share_prefix: bool = True) -> dict:
    from hnet_seq.inference.variants import score_variants

    with tempfile.TemporaryDirectory() as d:
        ref, vcf = write_reference_and_vcf(fasta, Path(d), n, window, 1, alts_per_site)
        s, dt = timed(im.device, lambda: score_variants(im, vcf, ref, Path(d) / "s.parquet", window=window,
                                                        rc_average=rc, batch_tokens=batch_tokens, progress=False,
                                                        share_prefix=share_prefix))
    return dict(variants=s.scored, windows=s.windows, seconds=dt, variants_per_s=s.scored / dt,
                window_bp_per_s=s.windows * window / dt)


def bench_saturation(im, fasta: Path, *, region_bp: int, window: int, rc: bool, share_prefix: bool,
                     batch_tokens: int | None) -> dict:
    """Saturation mutagenesis (3 SNVs per base) of ``region_bp`` bases mid-way along the longest record."""
    from hnet_seq.inference.saturation import saturation_mutagenesis

    with tempfile.TemporaryDirectory() as d:
        ref, _ = write_reference_and_vcf(fasta, Path(d), 0, window, 1, 1)
        contig, n = max(((line[1:].split()[0], len(next(f))) for f in [open(ref)] for line in f
                         if line.startswith(">")), key=lambda x: x[1])
        start = n // 2 - region_bp // 2
        s, dt = timed(im.device, lambda: saturation_mutagenesis(
            im, ref, f"{contig}:{start}-{start + region_bp}", Path(d) / "s.parquet", window=window, rc_average=rc,
            share_prefix=share_prefix, batch_tokens=batch_tokens, keep_alleles=False))
    return dict(variants=s.scored, windows=s.windows, seconds=dt, variants_per_s=s.scored / dt)


def keep_shared(args, results: dict, row: dict) -> None:
    """Add a shared-prefix row, print it and rewrite ``--json``: a run cut off by a time limit
    keeps the rows it finished."""
    results.setdefault("shared", []).append(row)
    print("shared", json.dumps(row), flush=True)
    if args.json:
        from hnet_seq.runtime.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))


def measure_shared(im, args, results: dict, *, window: int, n_var: int) -> None:
    """Shared-prefix rows beside full recomputation, same model and inputs: SNVs, saturation."""
    fasta, bt = args.fasta[0], args.batch_tokens[0]
    bench_variants(im, fasta, n=2, window=window, rc=True, alts_per_site=1, batch_tokens=bt)  # warm-up
    for rc in (False, True):
        for share in (False, True):
            r = bench_variants(im, fasta, n=n_var, window=window, rc=rc, alts_per_site=1, batch_tokens=bt,
                               share_prefix=share)
            r.update(kind="SNVs, 1 ALT per site", rc=rc, share_prefix=share)
            keep_shared(args, results, r)
    for rc in (False, True):
        for share in (False, True):
            r = bench_saturation(im, fasta, region_bp=args.saturate_bp, window=window, rc=rc, share_prefix=share,
                                 batch_tokens=bt)
            r.update(kind=f"saturation mutagenesis, {args.saturate_bp:,} bp", rc=rc, share_prefix=share)
            keep_shared(args, results, r)


def measure_rss(im, paths: list[Path], *, window: int, device: str, max_bp: int | None) -> dict:
    """Embed ``paths`` with --chunks through the CLI in a child process; its peak RSS."""
    from hnet_seq.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ck = d / "ck"
        save_checkpoint(ck, im.model, "dna", {})
        inputs = [str(p) for p in paths]
        total = None
        if max_bp:  # subsample: the first max_bp bases of every record, written as one FASTA
            from hnet_seq.modalities import get_adapter
            from hnet_seq.modalities.dna import decode_tokens

            sub = d / "subsample.fa"
            total = 0
            with open(sub, "w") as f:
                for r in get_adapter("dna").read_records(paths):
                    f.write(f">{r.id}\n{decode_tokens(r.data[:max_bp])}\n")
                    total += min(len(r), max_bp)
            inputs = [str(sub)]
        cmd = [sys.executable, "-m", "hnet_seq.cli", "embed", *inputs, "--checkpoint", str(ck), "-o",
               str(d / "k.parquet"), "--chunks", "--window", str(window), "--device", device, "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": path})
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"RSS run failed: {proc.stderr[-2000:]}")
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(str(d / "k.chunks.parquet")).metadata.num_rows
        size = (d / "k.chunks.parquet").stat().st_size
        bp = total if total is not None else int(pq.read_table(str(d / "k.parquet"), columns=["length"])
                                                  .column("length").to_numpy().sum())
    return dict(bp=bp, seconds=dt, peak_rss_gib=max(rss, before) / 2**20, chunk_rows=rows, chunks_gb=size / 1e9,
                note=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")


def measure_throughput(im, args, results: dict, *, window: int, embed_bp: int, chunks_bp: int, n_var: int) -> None:
    """The full tables at the first ``--batch-tokens``; pooled embedding and SNV rows at the others."""
    from hnet_seq.inference.model import default_batch_tokens

    records = dna_records(args.fasta, embed_bp)
    chunk_records = dna_records(args.fasta, min(chunks_bp, embed_bp))
    warm = dna_records(args.fasta, min(embed_bp, 4 * window))
    fasta = args.fasta[0]
    for k, bt in enumerate(args.batch_tokens):
        tokens = bt or default_batch_tokens(im.device)
        bench_embed(im, warm, window=window, chunks=True, rc=True, batch_tokens=bt)
        r = bench_forward(im, records, window=window, batch_tokens=bt)
        r.update(batch_tokens=tokens)
        results.setdefault("forward", []).append(r)
        print("forward", json.dumps(r), flush=True)
        for chunks, rc in ((False, False), (True, False), (False, True), (True, True))[:4 if k == 0 else 1]:
            r = bench_embed(im, chunk_records if chunks else records, window=window, chunks=chunks, rc=rc,
                            batch_tokens=bt)
            r.update(chunks=chunks, rc=rc, batch_tokens=tokens)
            results["embed"].append(r)
            print("embed", json.dumps(r), flush=True)
        bench_variants(im, fasta, n=2, window=window, rc=True, alts_per_site=1, batch_tokens=bt)
        for rc, alts in ((False, 1), (True, 1), (False, 3), (True, 3))[:4 if k == 0 else 2]:
            r = bench_variants(im, fasta, n=n_var if alts == 1 else max(n_var // 3, 2), window=window, rc=rc,
                               alts_per_site=alts, batch_tokens=bt)
            r.update(rc=rc, alts_per_site=alts, batch_tokens=max(tokens, window + 64))
            results["variants"].append(r)
            print("variants", json.dumps(r), flush=True)
