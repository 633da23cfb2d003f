"""Check that the ``hnet-seq`` inference commands write the same outputs at two commits.

    python tools/check_identical_outputs.py --write manifest.json   # at the old commit
    python tools/check_identical_outputs.py --check manifest.json   # at the new one: exit 1 on a difference

A fixed set of CLI commands (:data:`COMMANDS`: embed to parquet and npz, with and without
--chunks, --region/--bed, --rc-average; score to TSV, parquet, stdout, with --per-position, on
DNA, text and audio; score-variants on a small VCF with an SNV, MNV, insertion, deletion,
multi-allelic record, REF mismatch and missing contig, to TSV/parquet/stdout, --vcf-out
.vcf.gz/.bcf/.vcf, --windows-fasta, --rc-average, both --indel-window modes, --no-share-prefix;
--saturate; chunks to HTML, PNG and the terminal; generate DNA and text with fixed seeds, to a
file and stdout, and an audio continuation to WAV) runs on the genome, text and speech shipped
in ``hnet_seq/resources/`` with tiny models initialised from fixed seeds (tiny_1stage and
tiny_2stage configs, random routing projections so that boundaries are neither all nor none).
Each command runs as ``python -m hnet_seq.cli`` in a fresh process on CPU with one thread
(float reductions then do not depend on the machine's core count), in a temporary folder that
is its working directory, so that every path given is relative.

The manifest maps each command line to {output file: sha256}; ``<stdout>`` is the command's
standard output (stderr holds timings and is not compared).  Normalisation, applied before
hashing, removes what changes from run to run and nothing else:

* text (.tsv, .json, .vcf, .fa, .html, .txt, stdout): the temporary folder's absolute path and
  the repository root become ``<TMP>`` / ``<REPO>``; ISO-8601 date-times become ``<TIME>``;
* gzip/BGZF files (.vcf.gz, .tsv.gz, .bcf): the decompressed content, normalised as text (the
  gzip header carries a modification time);
* parquet: the schema's key-value metadata (JSON, normalised as text), the Arrow schema, the
  row-group layout (rows per group, codec per column) and the data as an Arrow IPC stream
  (the raw file names the pyarrow version that wrote it);
* npz: every member's name, dtype, shape and bytes in order, string members normalised as text
  (the zip entries carry modification times);
* anything else (PNG, WAV, .tbi/.csi indexes): the raw bytes.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "hnet_seq" / "resources" / "shigella_sonnei_53G_plasmids.fa.gz"
CONTIG_A, CONTIG_B, CONTIG_E = "NC_016833.1", "NC_016823.1", "NC_016834.1"
AUDIO = {"sample_rate": 8000, "frame_size": 40, "mixtures": 2}
SV = ["score-variants", "--reference", "ref.fa.gz", "--checkpoint", "dna2", "--window", "400", "--quiet"]

# (command line, output files it writes); every command also runs with --device cpu.
COMMANDS: list[tuple[list[str], list[str]]] = [
    (["embed", "small.fa", "--checkpoint", "dna2", "-o", "emb.parquet", "--quiet"], ["emb.parquet", "emb.parquet.json"]),
    (["embed", "small.fa", "--checkpoint", "dna2", "-o", "embc.parquet", "--chunks", "--window", "2048",
      "--overlap", "256", "--quiet"], ["embc.parquet", "embc.parquet.json", "embc.chunks.parquet"]),
    (["embed", "small.fa", "--checkpoint", "dna1", "-o", "emb.npz", "--chunks", "--pool", "chunks", "--quiet"],
     ["emb.npz"]),
    (["embed", "small.fa", "--checkpoint", "dna2", "-o", "embl.npz", "--pool", "last", "--layer", "input",
      "--stage", "1", "--quiet"], ["embl.npz"]),
    (["embed", "--region", f"{CONTIG_B}:1001-3000", "--reference", "ref.fa.gz", "--checkpoint", "dna2", "-o",
      "region.parquet", "--chunks", "--rc-average", "--quiet"],
     ["region.parquet", "region.parquet.json", "region.chunks.parquet"]),
    (["embed", "--bed", "genes.bed", "--reference", "ref.fa.gz", "--checkpoint", "dna1", "-o", "bed.parquet",
      "--chunks", "--chunks-out", "bedchunks.parquet", "--quiet"], ["bed.parquet", "bed.parquet.json", "bedchunks.parquet"]),
    (["score", "small.fa", "--checkpoint", "dna2", "-o", "score.tsv", "--per-position", "pp.parquet", "--window",
      "2048", "--quiet"], ["score.tsv", "score.tsv.json", "pp.parquet"]),
    (["score", "--bed", "genes.bed", "--reference", "ref.fa.gz", "--checkpoint", "dna1", "-o", "score.parquet",
      "--quiet"], ["score.parquet", "score.parquet.json"]),
    (["score", "small.fa", "--checkpoint", "dna1", "--quiet"], []),
    (["score", "text.txt", "--checkpoint", "bytes1", "-o", "text.tsv", "--quiet"], ["text.tsv", "text.tsv.json"]),
    (SV + ["--vcf", "calls.vcf", "-o", "var.tsv", "--vcf-out", "ann.vcf.gz", "--windows-fasta", "win.fa"],
     ["var.tsv", "var.tsv.json", "ann.vcf.gz", "ann.vcf.gz.tbi", "win.fa"]),
    (SV + ["--vcf", "calls.vcf.gz", "-o", "var.parquet", "--vcf-out", "ann.bcf", "--rc-average", "--indel-window",
           "span"], ["var.parquet", "var.parquet.json", "ann.bcf", "ann.bcf.csi"]),
    (SV + ["--vcf", "calls.vcf", "--no-share-prefix", "--vcf-out", "ann.vcf"], ["ann.vcf"]),
    (SV + ["--saturate", f"{CONTIG_B}:2001-2040", "-o", "sat.tsv", "--rc-average"], ["sat.tsv", "sat.tsv.json"]),
    (SV + ["--saturate", f"{CONTIG_B}:3001-3010"], []),
    (["chunks", "--checkpoint", "dna1", "--region", f"{CONTIG_B}:1-3000", "--reference", "ref.fa.gz", "--html",
      "chunks.html", "--png", "chunks.png", "--annotations", "genes.bed", "--window", "1000", "--overlap", "128"],
     ["chunks.html", "chunks.png"]),
    (["chunks", "small.fa", "--checkpoint", "dna2", "--record", CONTIG_E, "--html", "chunks_e.html"],
     ["chunks_e.html"]),
    (["chunks", "--checkpoint", "dna2", "--sequence", "ACGTTGCATTGACCGGTAACGTTAGCGATTACA" * 4], []),
    (["chunks", "--checkpoint", "bytes1", "--sequence", "Dynamic chunking: où? 分块"], []),
    (["generate", "--checkpoint", "dna2", "--prompt", "GATTACAGGCTTAACG", "-n", "64", "--seed", "3", "--top-k", "4",
      "--top-p", "0.95", "--num-samples", "2", "-o", "gen.fa"], ["gen.fa"]),
    (["generate", "--checkpoint", "dna1", "--prompt-file", "prompt.fa", "-n", "40", "--temperature", "0"], []),
    (["score", "speech.flac", "--checkpoint", "audio1", "-o", "audio.tsv", "--quiet"], ["audio.tsv", "audio.tsv.json"]),
    (["embed", "speech.flac", "--checkpoint", "audio1", "-o", "audio.parquet", "--chunks", "--quiet"],
     ["audio.parquet", "audio.parquet.json", "audio.chunks.parquet"]),
    (["generate", "--checkpoint", "audio1", "--audio-prompt", "speech.flac", "--out-wav", "more.wav", "--seconds",
      "0.05", "--seed", "2"], ["more.wav"]),
    (["generate", "--checkpoint", "bytes1", "--prompt", "All human beings", "-n", "32", "--seed", "1",
      "--temperature", "0.8", "-o", "gen.txt"], ["gen.txt"]),
]

TEXT_SUFFIXES = (".tsv", ".json", ".vcf", ".fa", ".html", ".txt", ".bed")
ISO_TIME = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")


# ---- inputs ---------------------------------------------------------------------------------
def _models(work: Path) -> None:
    """dna1, dna2 (tiny_1stage/tiny_2stage, DNA), bytes1 and audio1 (tiny_1stage), fixed seeds."""
    import torch

    from hnet_seq.checkpoint import save_checkpoint
    from hnet_seq.config import load_config
    from hnet_seq.modalities import get_adapter
    from hnet_seq.model import HNetLM

    for name, config, modality, seed, options in (("dna1", "tiny_1stage.json", "dna", 0, {}),
                                                  ("dna2", "tiny_2stage.json", "dna", 1, {}),
                                                  ("bytes1", "tiny_1stage.json", "bytes", 2, {}),
                                                  ("audio1", "tiny_1stage.json", "audio", 3, AUDIO)):
        torch.manual_seed(seed)
        cfg = load_config(ROOT / "configs" / config)
        adapter = get_adapter(modality, **options)
        d = cfg.d_model[0]
        model = HNetLM(cfg, embeddings=adapter.make_embedding(d), lm_head=adapter.make_head(d))
        model.init_weights()
        for module in model.modules():  # random routing: boundaries neither everywhere nor nowhere
            if hasattr(module, "q_proj_layer"):
                torch.nn.init.normal_(module.q_proj_layer.weight, std=0.3)
                torch.nn.init.normal_(module.k_proj_layer.weight, std=0.3)
        save_checkpoint(work / name, model, modality, options)


def _other(base: str, k: int = 1) -> str:
    return "ACGT"[("ACGT".index(base.upper()) + k) % 4]


def _vcf_text(b: str) -> str:
    """Variants on plasmid B (0-based string ``b``): every kind the scorer treats differently."""
    at = lambda pos, n=1: b[pos - 1:pos - 1 + n]  # noqa: E731  (VCF POS is 1-based)
    records = [(CONTIG_B, 20, "edge", at(20), _other(at(20))),
               (CONTIG_B, 900, "snv", at(900), _other(at(900))),
               (CONTIG_B, 1000, "mnv", at(1000, 3), "".join(_other(x, 2) for x in at(1000, 3))),
               (CONTIG_B, 1100, "ins", at(1100), at(1100) + "GATTACA"),
               (CONTIG_B, 1200, "del", at(1200, 9), at(1200)),
               (CONTIG_B, 1300, "multi", at(1300), f"{_other(at(1300))},{_other(at(1300), 2)},{at(1300)}AC"),
               (CONTIG_B, 1400, "mismatch", _other(at(1400)), "A"),
               ("chrUn", 50, "nocontig", "A", "G"),
               (CONTIG_B, 1600, "symbolic", at(1600), "<DEL>")]
    header = ["##fileformat=VCFv4.2", f"##contig=<ID={CONTIG_B},length={len(b)}>", "##contig=<ID=chrUn>",
              '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines = [f"{c}\t{p}\t{i}\t{r}\t{a}\t50\tPASS\tDP={k + 10}" for k, (c, p, i, r, a) in enumerate(records)]
    return "\n".join(header + lines) + "\n"


def prepare(work: Path) -> None:
    """The models, the packaged genome (copied: its index too) and the small inputs, in ``work``."""
    import pysam

    for suffix in ("", ".fai", ".gzi"):
        shutil.copyfile(f"{GENOME}{suffix}", work / f"ref.fa.gz{suffix}")
    with pysam.FastaFile(str(work / "ref.fa.gz")) as fa:
        a, b, e = (fa.fetch(c) for c in (CONTIG_A, CONTIG_B, CONTIG_E))
    (work / "small.fa").write_text(f">{CONTIG_B}\n{b}\n>{CONTIG_A}\n{a[20000:21500]}\n>{CONTIG_E}\n{e[:1500].lower()}\n")
    (work / "prompt.fa").write_text(f">{CONTIG_E} 300 bp\n{e[3000:3300]}\n")
    (work / "genes.bed").write_text(f"{CONTIG_B}\t100\t900\tgeneA\t0\t+\n{CONTIG_B}\t1500\t2600\tgeneB\t0\t-\n"
                                    f"{CONTIG_E}\t4000\t4700\tgeneC\t0\t.\n")
    (work / "calls.vcf").write_text(_vcf_text(b))
    pysam.tabix_compress(str(work / "calls.vcf"), str(work / "calls.vcf.gz"))
    with gzip.open(ROOT / "hnet_seq" / "resources" / "udhr" / "eng.txt.gz", "rt", encoding="utf-8") as f:
        (work / "text.txt").write_text(f.read()[:3000], encoding="utf-8")
    shutil.copyfile(ROOT / "hnet_seq" / "resources" / "speech" / "hts1a.flac", work / "speech.flac")
    _models(work)


# ---- normalisation and hashing --------------------------------------------------------------
def normalise_text(data: bytes, work: Path) -> bytes:
    for path, token in ((work.resolve(), b"<TMP>"), (work, b"<TMP>"), (ROOT, b"<REPO>")):
        data = data.replace(str(path).encode(), token)
    return ISO_TIME.sub(b"<TIME>", data)


def _parquet_digest(path: Path, work: Path, h) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = pq.ParquetFile(str(path))
    table = f.read()
    for key, value in sorted((table.schema.metadata or {}).items()):
        h.update(key + b"=" + normalise_text(value, work) + b"\n")
    plain = table.replace_schema_metadata(None)
    h.update(plain.schema.to_string().encode())
    meta = f.metadata
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        h.update(f"group {g}: {rg.num_rows} rows, ".encode()
                 + ",".join(rg.column(c).compression for c in range(rg.num_columns)).encode())
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, plain.schema) as w:
        w.write_table(plain)
    h.update(sink.getvalue())


def _npz_digest(path: Path, work: Path, h) -> None:
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            a = z[name]
            data = a.tobytes()
            if a.dtype.kind == "U":
                data = normalise_text("\x00".join(map(str, a.ravel().tolist())).encode(), work)
            h.update(f"{name} {a.dtype.str} {a.shape}\n".encode() + data)


def digest(path: Path, work: Path) -> str:
    """sha256 of ``path`` after the normalisation of the module docstring."""
    h = hashlib.sha256()
    name = path.name
    if name.endswith(".parquet"):
        _parquet_digest(path, work, h)
    elif name.endswith(".npz"):
        _npz_digest(path, work, h)
    elif name.endswith((".gz", ".bcf")):
        h.update(normalise_text(gzip.decompress(path.read_bytes()), work))
    elif name.endswith(TEXT_SUFFIXES):
        h.update(normalise_text(path.read_bytes(), work))
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


# ---- running --------------------------------------------------------------------------------
def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", TZ="UTC",
               COLUMNS="120", LINES="50", FORCE_COLOR="1", TERM="xterm-256color", CUDA_VISIBLE_DEVICES="")
    for key in ("HNET_SEQ_KERNELS", "NO_COLOR"):
        env.pop(key, None)
    return env


def run_all(work: Path, only: str | None = None) -> dict[str, dict[str, str]]:
    """Run every command in ``work``; {command line: {output: sha256}}."""
    manifest = {}
    env = _env()
    for args, outputs in COMMANDS:
        line = "hnet-seq " + subprocess.list2cmdline(args)
        if only and only not in line:
            continue
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hnet_seq.cli", *args, "--device", "cpu"], cwd=work, env=env,
                              capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"{line}: exit {proc.returncode}\n{proc.stderr.decode(errors='replace')[-2000:]}")
        hashes = {"<stdout>": hashlib.sha256(normalise_text(proc.stdout, work)).hexdigest()}
        for out in outputs:
            hashes[out] = digest(work / out, work) if (work / out).exists() else "missing"
        manifest[line] = hashes
        print(f"{time.perf_counter() - t0:6.1f} s  {line}", file=sys.stderr)
    return manifest


def compare(old: dict, new: dict) -> list[str]:
    """One line per command or output whose hash differs (or that is only on one side)."""
    lines = []
    for command in sorted(set(old) | set(new)):
        a, b = old.get(command), new.get(command)
        if a is None or b is None:
            lines.append(f"{command}: only in the {'new' if a is None else 'old'} run")
            continue
        lines += [f"{command}: {out} differs" for out in sorted(set(a) | set(b)) if a.get(out) != b.get(out)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="MANIFEST", help="run the commands and write their hashes")
    mode.add_argument("--check", type=Path, metavar="MANIFEST", help="run the commands and compare (exit 1 if any differ)")
    p.add_argument("--keep", type=Path, help="run in this (new or empty) folder and keep it, to inspect the outputs")
    p.add_argument("--only", help="run only the commands whose line contains this text (debugging)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
        prepare(work)
        manifest = run_all(work, args.only)
    else:
        with tempfile.TemporaryDirectory(prefix="hnet-identity-") as tmp:
            prepare(Path(tmp))
            manifest = run_all(Path(tmp), args.only)
    print(f"{len(manifest)} commands in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.write:
        args.write.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return 0
    old = json.loads(args.check.read_text())
    if args.only:
        old = {k: v for k, v in old.items() if args.only in k}
    diffs = compare(old, manifest)
    for line in diffs:
        print(line)
    print(f"{'DIFFERENT' if diffs else 'identical'}: {len(diffs)} differing outputs", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
