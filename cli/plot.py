"""``hnet-seq plot RUN_DIR``: PNG curves from a run's metrics.jsonl (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hnet_seq.cli.main import command


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write loss.png, heldout.png, compression.png and throughput.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hnet_seq.errors import UserError
    from hnet_seq.train.metrics import METRICS, read_metrics

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train" and isinstance(r.get("loss"), (int, float))]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        raise UserError(f"{run_dir}: no training metrics (expected {run_dir / METRICS} written by 'hnet-seq train')")
    starts = [r for r in records if r.get("kind") in ("start", "resume")]
    unit = starts[-1].get("unit", "unit") if starts else "unit"
    targets = starts[-1].get("target_compression", []) if starts else []
    out_dir = Path(out_dir) if out_dir else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    steps = [r["step"] for r in train]

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # loss: the whole objective and the NLL in bits per unit
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["bits_per_unit"] for r in train], lw=1, label=f"train NLL (bits/{unit})")
    ax.plot(steps, [r["loss"] for r in train], lw=1, alpha=0.7, label="objective (nats + ratio loss)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["bits_per_unit"] for r in evals], "o-", label=f"held-out bits/{unit}")
    ax.set_xlabel("step")
    ax.set_title(f"loss — {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "loss.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    if evals:
        ax.plot([r["step"] for r in evals], [r["bits_per_unit"] for r in evals], "o-")
    if unit == "base":
        ax.axhline(2.0, color="gray", ls="--", label="uniform ACGT (2 bits)")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(f"bits per {unit}")
    ax.set_title(f"held-out bits per {unit}")
    ax.grid(alpha=0.3)
    save(fig, "heldout.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    n_stages = max((len(r.get("compression") or []) for r in train), default=0)
    for s in range(n_stages):
        line, = ax.plot(steps, [(r.get("compression") or [None] * n_stages)[s] for r in train], lw=1,
                        label=f"stage {s}")
        if s < len(targets):
            ax.axhline(targets[s], color=line.get_color(), ls="--", lw=1, label=f"target {targets[s]:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("positions per chunk")
    ax.set_yscale("log")
    ax.set_title("compression per stage")
    ax.grid(alpha=0.3)
    if n_stages:
        ax.legend()
    save(fig, "compression.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r.get("tokens_per_s", 0) for r in train], lw=1, label="positions/s (all ranks)")
    ax.set_xlabel("step")
    ax.set_ylabel("positions per second")
    mfu = [(r["step"], r["mfu"]) for r in train if isinstance(r.get("mfu"), (int, float))]
    if mfu:
        ax2 = ax.twinx()
        ax2.plot([m[0] for m in mfu], [100 * m[1] for m in mfu], color="tab:red", lw=1, label="MFU %")
        ax2.set_ylabel("MFU (%)")
    ax.set_title("throughput")
    ax.grid(alpha=0.3)
    save(fig, "throughput.png")
    return written


def plot_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by 'hnet-seq train' (holds metrics.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the PNGs (default: RUN_DIR/plots)."),
) -> None:
    from hnet_seq.errors import UserError

    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    for path in plot_run(run_dir, out):
        typer.echo(str(path))


plot_command.__doc__ = """Plot a training run: loss, held-out bits per unit, compression per stage, throughput.

Examples:

  hnet-seq plot runs/dna-tiny

  hnet-seq plot runs/dna-tiny --out figures/
"""
command("plot")(plot_command)
