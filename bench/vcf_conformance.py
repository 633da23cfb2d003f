"""Run every file of a VCF conformance corpus through ``hnet-seq score-variants``.

The corpus is samtools/hts-specs ``test/vcf/{4.1,4.2,4.3,4.5}/{passed,failed}/*.vcf``
(Apache-2.0).  Each file must give a scored table or one clean error (exit 2, one line, no
traceback), and in a table every record must be accounted for: each ALT allele scored or
skipped with a reason, and every record present in the annotated ``--vcf-out``.

Reference: the corpus's variants come from no assembly we have, so every contig a file names
gets the same real sequence, Shigella sonnei plasmid NC_016833.1 (215,774 bp, shipped in
``hnet_seq/resources``).  No REF is patched in: a REF that does not match is a legitimate,
reported ``ref_mismatch``.  Model: a randomly initialised tiny DNA model (the point is the
input handling, not the scores).  Each file runs in a forked child, so that a process abort
in htslib is caught and reported instead of ending the run.

    python bench/vcf_conformance.py /work/cache/hts-specs/test/vcf --md docs/vcf_conformance.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTIG_SEQ = ("NC_016833.1", ROOT / "hnet_seq" / "resources" / "shigella_sonnei_53G_plasmids.fa.gz")


def contig_names(paths: list[Path]) -> list[str]:
    """Every CHROM of the files' records and ##contig lines that can be a FASTA name."""
    names = set()
    for p in paths:
        for line in p.read_text(errors="replace").splitlines():
            if line.startswith("##contig=<ID="):
                names.add(line[len("##contig=<ID="):].split(",")[0].rstrip(">"))
            elif line and not line.startswith("#"):
                names.add(line.split("\t")[0])
    return sorted(n for n in names if n and not any(c.isspace() or c in ">\x00" for c in n))


def build_reference(names: list[str], folder: Path) -> Path:
    import pysam

    with pysam.FastaFile(str(CONTIG_SEQ[1])) as fa:
        seq = fa.fetch(CONTIG_SEQ[0]).upper()
    path = folder / "reference.fa"
    with open(path, "w") as f:
        for n in names:
            f.write(f">{n}\n" + "\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + "\n")
    pysam.faidx(str(path))
    return path


def build_checkpoint(folder: Path) -> Path:
    import torch

    from hnet_seq.checkpoint import save_checkpoint
    from hnet_seq.config import load_config
    from hnet_seq.model import HNetLM
    from hnet_seq.modalities import get_adapter

    torch.manual_seed(0)
    adapter = get_adapter("dna")
    model = HNetLM(load_config(ROOT / "configs" / "tiny_2stage.json"), embeddings=adapter.make_embedding(64),
                   lm_head=adapter.make_head(64))
    model.init_weights()
    save_checkpoint(folder / "ck", model, "dna", {})
    return folder / "ck"


def _run_one(vcf: Path, reference: Path, checkpoint: Path, work: Path, window: int) -> dict:
    """score-variants on one file, in this process; the outcome as a JSON-able dict."""
    import pysam
    from typer.testing import CliRunner

    from hnet_seq.cli.main import app

    out, annotated = work / "scores.tsv", work / "annotated.vcf.gz"
    r = CliRunner().invoke(app, ["score-variants", "--vcf", str(vcf), "--reference", str(reference),
                                 "--checkpoint", str(checkpoint), "-o", str(out), "--vcf-out", str(annotated),
                                 "--window", str(window), "--quiet"])
    text = r.output.strip()
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return {"outcome": "crashed", "error": f"{type(r.exception).__name__}: {r.exception}"}
    if r.exit_code == 2:
        clean = len(text.splitlines()) == 1 and text.startswith("error:") and "Traceback" not in text
        left = sorted(p.name for p in work.iterdir())
        return {"outcome": "refused" if clean and not left else "unclean", "error": text, "left": left}
    if r.exit_code != 0:
        return {"outcome": "crashed", "error": f"exit {r.exit_code}: {text[-300:]}"}
    rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
    cols, rows = rows[0], [dict(zip(rows[0], x)) for x in rows[1:]]
    with pysam.VariantFile(str(annotated)) as vf:
        written = sum(1 for _ in vf)
    summary = text.splitlines()[-1]  # "N records, M ALT alleles: ..."
    records, alleles = int(summary.split(" records, ")[0]), int(summary.split(" records, ")[1].split(" ")[0])
    unwritable = sum(1 for x in rows if "vcf_unwritable" in x["flags"])
    reasons = Counter(x["flags"].split(",")[0] for x in rows if x["status"] == "skipped")
    accounted = (len(rows) == alleles and all(x["status"] == "scored" or x["reason"] not in ("", ".") for x in rows)
                 and (written == records or unwritable > 0))
    return {"outcome": "scored", "records": records, "alleles": alleles, "written": written,
            "scored": sum(x["status"] == "scored" for x in rows), "skipped": dict(reasons),
            "unwritable": unwritable, "accounted": accounted}


def run_file(vcf: Path, reference: Path, checkpoint: Path, window: int = 64) -> dict:
    """``_run_one`` in a forked child (an htslib abort ends only the child)."""
    rfd, wfd = os.pipe()
    with tempfile.TemporaryDirectory() as tmp:
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            try:
                res = _run_one(vcf, reference, checkpoint, Path(tmp), window)
            except BaseException as e:  # reported as a crash of this file
                res = {"outcome": "crashed", "error": f"{type(e).__name__}: {e}"}
            os.write(wfd, json.dumps(res).encode())
            os._exit(0)
        os.close(wfd)
        data = b""
        while chunk := os.read(rfd, 1 << 16):
            data += chunk
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    if not data:
        return {"outcome": "aborted", "error": f"process ended with status {status} and no result"}
    return json.loads(data)


def run_corpus(files: list[Path], window: int = 64, progress: bool = False) -> dict[Path, dict]:
    import pysam
    import typer.testing  # noqa: F401  (imported once here, not in every forked child)

    import hnet_seq.cli.main  # noqa: F401
    import hnet_seq.inference.variants  # noqa: F401

    pysam.set_verbosity(0)  # htslib's per-record warnings would drown the report
    with tempfile.TemporaryDirectory() as tmp:
        reference = build_reference(contig_names(files), Path(tmp))
        checkpoint = build_checkpoint(Path(tmp))
        results = {}
        for i, f in enumerate(files):
            results[f] = run_file(f, reference, checkpoint, window)
            if progress:
                print(f"[{i + 1}/{len(files)}] {f}: {results[f]['outcome']}", file=sys.stderr)
    return results


def markdown(results: dict[Path, dict], corpus: Path, command: str) -> str:
    groups: dict[str, list] = {}
    for f, r in results.items():
        groups.setdefault(str(f.parent.relative_to(corpus)), []).append(r)
    lines = ["# VCF conformance corpus through `score-variants`", "",
             "Corpus: samtools/hts-specs `test/vcf` (Apache-2.0). Reference: every contig a file names gets the "
             "real sequence of Shigella sonnei plasmid NC_016833.1 (no REF patched in, so most REFs are reported "
             "`ref_mismatch`); a randomly initialised tiny model; window 64.", "", "Command:", "",
             f"    {command}", "",
             "| folder | files | scored (table) | refused (one clean error) | other | records | alleles | "
             "alleles scored | alleles skipped (reason given) | records accounted |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    total = Counter()
    for g in sorted(groups):
        rs = groups[g]
        ok = [r for r in rs if r["outcome"] == "scored"]
        row = Counter(files=len(rs), scored=len(ok), refused=sum(r["outcome"] == "refused" for r in rs),
                      records=sum(r["records"] for r in ok), alleles=sum(r["alleles"] for r in ok),
                      a_scored=sum(r["scored"] for r in ok),
                      a_skipped=sum(sum(r["skipped"].values()) for r in ok),
                      accounted=sum(r["records"] for r in ok if r["accounted"]))
        row["other"] = row["files"] - row["scored"] - row["refused"]
        total.update(row)
        lines.append(f"| {g} | " + " | ".join(str(row[k]) for k in ("files", "scored", "refused", "other", "records",
                                                                      "alleles", "a_scored", "a_skipped",
                                                                      "accounted")) + " |")
    lines.append("| **all** | " + " | ".join(str(total[k]) for k in ("files", "scored", "refused", "other", "records",
                                                                      "alleles", "a_scored", "a_skipped",
                                                                      "accounted")) + " |")
    reasons = Counter()
    for r in results.values():
        reasons.update(r.get("skipped", {}))
    lines += ["", "Skip reasons over all scored files: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()),
              "", "## Files refused or failing", "", "| file | outcome | message |", "|---|---|---|"]
    for f, r in sorted(results.items()):
        if r["outcome"] != "scored":
            msg = r["error"].replace("|", "\\|").replace(str(f), "FILE")
            lines.append(f"| {f.relative_to(corpus)} | {r['outcome']} | {msg} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, help="the test/vcf folder of samtools/hts-specs")
    ap.add_argument("--md", type=Path, help="write the result tables here (markdown)")
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    files = sorted(args.corpus.glob("*/*/*.vcf"))
    results = run_corpus(files, args.window, progress=True)
    command = "python bench/vcf_conformance.py " + " ".join(sys.argv[1:])
    text = markdown(results, args.corpus, command)
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
