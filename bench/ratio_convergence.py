"""Does the ratio loss hold the compression at its target?  Two targets on Klebsiella genomes.

    python bench/ratio_convergence.py                      # trains both runs (CPU: ~10 min each)
    python bench/ratio_convergence.py --runs RUN_3 RUN_6   # only plot runs you already have
    python bench/ratio_convergence.py --device cuda --steps 2000   # GPU: longer runs in minutes

Each run is ``hnet-seq train --config dna-tiny`` on three Klebsiella pneumoniae genomes from
``../shared/data/dna`` with ``objective.target_compression=[N]``; the held-out region is the
config's (the last 5% of every record).  The plot shows the measured compression (positions per
chunk) on the training batches and on the held-out region, and held-out bits per base, against the
step; the table gives the last held-out figures and their distance from the target.  Results go to
``docs/img/ratio_convergence.png`` and the ``ratio`` section of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, write_section  # noqa: E402

GENOMES = ["klebsiella_Klebs_HS11286.fna.gz", "klebsiella_Klebs_Kp1084.fna.gz", "klebsiella_MGH78578.fna.gz"]


def train(target: float, out: Path, steps: int, data_dir: Path, device: str) -> Path:
    cmd = [sys.executable, "-m", "hnet_seq.cli", "train", "--config", "dna-tiny", "--out", str(out),
           "--steps", str(steps), "--device", device, "--set", f"objective.target_compression=[{target:g}]",
           "--set", "logging.eval_every=100", "--set", f"checkpoint.every={steps}", "--quiet"]
    for g in GENOMES:
        cmd += ["--data", str(data_dir / g)]
    subprocess.run(cmd, check=True)
    return out


def load(run: Path) -> tuple[float, list[dict], list[dict]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    target = json.loads((run / "run_config.json").read_text())["objective"]["target_compression"][0]
    return target, [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "eval"]


def settled_since(evals: list[dict], target: float, tolerance: float = 0.1) -> str:
    """The first evaluation step after which every held-out compression is within ``tolerance``."""
    since = None
    for row in evals:
        ok = abs(row["compression"][0] / target - 1) <= tolerance
        since = (since if since is not None else row["step"]) if ok else None
    return "never" if since is None else str(since)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="3,6")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", nargs="*", type=Path, help="existing run directories to plot instead of training")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "dna")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "runs" / "ratio")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--label", help="where the runs ran, for the docs (default: this machine's --device)")
    args = parser.parse_args()
    runs = args.runs or [train(float(t), args.workdir / f"target{t}", args.steps, args.data, args.device)
                         for t in args.targets.split(",")]
    where = args.label
    if where is None and args.device == "cuda":
        import torch

        where = torch.cuda.get_device_name()
    where = where or "2-core CPU"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_b) = plt.subplots(1, 2, figsize=(11, 4))
    lines = ["| target | steps | last held-out compression | off target | within 10% at every evaluation since step | held-out bits/base |",
             "|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        target, tr, ev = load(run)
        ax_c.plot([r["step"] for r in tr], [r["compression"][0] for r in tr], alpha=0.4, label=f"target {target:g}, train batches")
        ax_c.plot([r["step"] for r in ev], [r["compression"][0] for r in ev], "o-", label=f"target {target:g}, held-out")
        ax_c.axhline(target, ls="--", color="grey")
        ax_b.plot([r["step"] for r in ev], [r["bits_per_unit"] for r in ev], "o-", label=f"target {target:g}")
        last = ev[-1]
        off = 100 * (last["compression"][0] / target - 1)
        lines.append(f"| {target:g} | {last['step']} | {last['compression'][0]:.2f} | {off:+.0f}% | "
                     f"{settled_since(ev, target)} | {last['bits_per_unit']:.3f} |")
    ax_c.set(xlabel="step", ylabel="bases per chunk (log)", title="compression", yscale="log")
    ax_b.set(xlabel="step", ylabel="bits per base", title="held-out bits per base")
    ax_c.legend(fontsize=7)
    ax_b.legend(fontsize=7)
    fig.tight_layout()
    img = REPO_ROOT / "docs" / "img" / "ratio_convergence.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, dpi=120)
    table = "\n".join(lines)
    print(table)
    write_section(REPO_ROOT / "docs" / "benchmarks.md", "ratio", "\n".join([
        "## Ratio loss: compression against its target",
        "",
        "`dna-tiny` (1 stage, d_model 64/128) on three Klebsiella pneumoniae genomes, 4096 bases per step, "
        f"ratio-loss weight 0.03, cosine schedule over the run, {where}; compression is measured on the held-out region.",
        f"Reproduce: `python bench/ratio_convergence.py --targets {args.targets} --steps {args.steps} --device {args.device}`",
        "",
        table,
        "",
        "![ratio convergence](img/ratio_convergence.png)"]))


if __name__ == "__main__":
    main()
