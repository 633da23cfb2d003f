"""``hnet-seq plot RUN_DIR``: one PNG of a run's metrics.jsonl (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hnet_seq.cli.main import command


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write ``run.png`` (:func:`run_figure`) into ``out_dir`` (default ``RUN_DIR/plots``); return its path."""
    fig = run_figure(run_dir)  # selects the Agg backend
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "run.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def run_figure(run_dir: Path):
    """One matplotlib figure of a run's metrics, four panels.

    Panels (shared step axis): the objective and NLL in nats; train and held-out bits per unit
    (a separate axis: nats and bits never share one); compression per chunking stage against
    its target (stage 1 = the first router, as every other output numbers them); throughput.
    Every resume point is a dotted vertical line on all panels.
    """
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
    resumes = [r["step"] for r in records if r.get("kind") == "resume"]
    fig, (nats, bits, comp, speed) = plt.subplots(4, 1, figsize=(8, 11), sharex=True)
    _loss_panel(nats, train, unit, run_dir.name)
    _bits_panel(bits, train, evals, unit)
    _compression_panel(comp, train, evals, targets)
    _speed_panel(speed, train)
    for ax in (nats, bits, comp, speed):
        for i, step in enumerate(resumes):
            ax.axvline(step, color="gray", ls=":", lw=1, label="resumed" if i == 0 else None)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _loss_panel(ax, train: list[dict], unit: str, name: str) -> None:
    steps = [r["step"] for r in train]
    ax.plot(steps, [r["loss"] for r in train], lw=1, label="objective (NLL + ratio loss)")
    ax.plot(steps, [r.get("nll") for r in train], lw=1, alpha=0.8, label=f"train NLL per {unit}")
    ax.set_ylabel("nats")
    ax.set_title(f"{name}: loss", loc="left", fontsize=10)


def _bits_panel(ax, train: list[dict], evals: list[dict], unit: str) -> None:
    ax.plot([r["step"] for r in train], [r["bits_per_unit"] for r in train], lw=1, alpha=0.7, label="train")
    if evals:
        ax.plot([r["step"] for r in evals], [r["bits_per_unit"] for r in evals], "o-", ms=3, label="held-out")
    ax.set_ylabel(f"bits per {unit}")
    ax.set_title(f"bits per {unit}", loc="left", fontsize=10)


def _compression_panel(ax, train: list[dict], evals: list[dict], targets: list) -> None:
    """Per stage: train compression (line), held-out (dots) and the target (dashed), log scale."""
    import matplotlib.ticker

    steps = [r["step"] for r in train]
    n_stages = max((len(r.get("compression") or []) for r in train), default=0)
    for s in range(n_stages):
        line, = ax.plot(steps, [(r.get("compression") or [None] * n_stages)[s] for r in train], lw=1,
                        label=f"stage {s + 1}")
        held = [(r["step"], r["compression"][s]) for r in evals if len(r.get("compression") or []) > s]
        if held:
            ax.plot(*zip(*held), "o", ms=3, color=line.get_color(), label=f"stage {s + 1} held-out")
        if s < len(targets):
            ax.axhline(targets[s], color=line.get_color(), ls="--", lw=1, label=f"stage {s + 1} target {targets[s]:g}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel("positions per chunk")
    ax.set_title("compression against target", loc="left", fontsize=10)


def _speed_panel(ax, train: list[dict]) -> None:
    """Positions per second, and MFU (%) on a twin axis when the run logged it."""
    ax.plot([r["step"] for r in train], [r.get("tokens_per_s", 0) for r in train], lw=1,
            label="positions/s (all ranks)")
    ax.set_ylabel("positions / s")
    ax.set_title("throughput", loc="left", fontsize=10)
    mfu = [(r["step"], r["mfu"]) for r in train if isinstance(r.get("mfu"), (int, float))]
    if mfu:
        twin = ax.twinx()
        twin.plot([m[0] for m in mfu], [100 * m[1] for m in mfu], color="tab:red", lw=1)
        twin.set_ylabel("MFU (%)", color="tab:red")
    ax.set_xlabel("step")


def plot_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by 'hnet-seq train' (holds metrics.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for run.png (default: RUN_DIR/plots)."),
) -> None:
    from hnet_seq.errors import UserError

    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    for path in plot_run(run_dir, out):
        typer.echo(str(path))


plot_command.__doc__ = """Plot a training run as one PNG (RUN_DIR/plots/run.png): loss in nats, bits per unit
(train and held-out), compression per stage against its target, throughput; resume points marked.

Examples:

  hnet-seq plot runs/dna-tiny

  hnet-seq plot runs/dna-tiny --out figures/
"""
command("plot")(plot_command)
