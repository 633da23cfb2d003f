"""The reading of the model-quality experiments (``bench/quality_dna.py``, ``bench/quality_udhr.py``,
``bench/quality_human.py``): what :mod:`_quality` trains and keeps in ``results.json`` turned into
numbers, figures and ``docs/results.md`` sections.

* curves: held-out bits per unit against units seen and training FLOPs spent, and the data- and
  compute-efficiency factors of the H-Net read off them;
* markdown: where the report goes, the provenance lines, the model and efficiency tables;
* boundary statistics: how often the first chunking stage starts a chunk over a set of positions.
"""
from __future__ import annotations

import math
from pathlib import Path

from _report import REPO_ROOT

DOCS = REPO_ROOT / "docs"
COLOURS = {"hnet": "C3", "mamba2": "C0", "transformer": "C2"}


# ---- curves --------------------------------------------------------------------------------------


def reach(curve: list[dict], x_key: str, level: float) -> float | None:
    """Where the curve's best-so-far held-out bits first reach ``level`` (interpolated linearly in
    log x between evaluations), or None if it never does."""
    best, prev = math.inf, None
    for row in curve:
        x, y = row[x_key], row["bits_per_unit"]
        if x <= 0:
            best, prev = min(best, y), None
            continue
        y = min(best, y)
        if y <= level:
            if prev is None or prev[1] <= level:
                return x
            t = (prev[1] - level) / (prev[1] - y)
            return math.exp(math.log(prev[0]) + t * (math.log(x) - math.log(prev[0])))
        best, prev = y, (x, y)
    return None


def efficiency(hnet: list[dict], base: list[dict], x_key: str) -> dict:
    """Data (``units_seen``) or compute (``flops_seen``) efficiency of the H-Net over a baseline.

    ``to_hnet_final``: x the baseline needs to reach the H-Net's final bits ÷ x the H-Net spent
    (None: the baseline never got there, so the factor is > its final x ÷ the H-Net's).
    ``at_base_final``: x the baseline spent ÷ x the H-Net needed to reach the baseline's final
    bits (None: the H-Net never got there, the factor is < 1).
    """
    h_final, b_final = hnet[-1], base[-1]
    x_b = reach(base, x_key, h_final["bits_per_unit"])
    x_h = reach(hnet, x_key, b_final["bits_per_unit"])
    return {"to_hnet_final": x_b / h_final[x_key] if x_b else None,
            "lower_bound": b_final[x_key] / h_final[x_key],
            "at_base_final": b_final[x_key] / x_h if x_h else None}


def factor_text(eff: dict) -> tuple[str, str]:
    """The two readings of :func:`efficiency` as table cells."""
    a = f"{eff['to_hnet_final']:.2f}×" if eff["to_hnet_final"] else f"> {eff['lower_bound']:.2f}× (not reached)"
    b = f"{eff['at_base_final']:.2f}×" if eff["at_base_final"] else "< 1× (H-Net never reached it)"
    return a, b


def plot_curves(results: dict, path: Path, unit: str, title: str) -> Path:
    """Held-out bits per unit against training FLOPs and against units seen, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    spare = iter(c for c in (f"C{i}" for i in range(10)) if c not in COLOURS.values())
    for name, model in results["models"].items():
        curve = [r for r in model["curve"] if r["units_seen"] > 0]
        colour = COLOURS.get(name.split()[0]) or next(spare)  # "hnet (cut off ...)" keeps hnet's colour
        style = "o--" if "planned_bases" in model else "o-"  # dashed: a run cut off before its end
        for ax, key in zip(axes, ("flops_seen", "units_seen")):
            ax.plot([r[key] for r in curve], [r["bits_per_unit"] for r in curve], style, ms=3,
                    color=colour, label=f"{name} {model['layout']}")
    axes[0].set(xscale="log", xlabel="training FLOPs spent (measured)", ylabel=f"held-out bits per {unit}")
    axes[1].set(xscale="log", xlabel=f"training {unit}s seen", ylabel=f"held-out bits per {unit}")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- markdown ------------------------------------------------------------------------------------


def docs_dir(results: dict, out_dir: Path) -> Path:
    """Where the report goes: ``docs/`` (``results.md``, ``img/``), or ``OUT/docs`` for a smoke run
    (``out_dir`` is the experiment's folder, ``OUT/dna`` or ``OUT/udhr``),
    so that a harness test never overwrites measured results."""
    if not results["smoke"]:
        return DOCS
    docs = out_dir.parent / "docs"
    (docs / "img").mkdir(parents=True, exist_ok=True)
    if not (docs / "results.md").exists():
        (docs / "results.md").write_text("# Model quality: smoke run (tests the harness, not the models)\n")
    return docs


def provenance(results: dict) -> list[str]:
    """Markdown lines: device, wall time, configs and the command that reproduces a section."""
    total = results["wall_s"]
    lines = [f"Device: **{results['device']}**; whole experiment {total / 60:.1f} min wall "
             f"(training, evaluation, analysis), run {results['started']}."]
    if results["smoke"]:
        lines.append("**Smoke run** (tiny models, a few steps, CPU): the numbers test the harness, "
                     "they say nothing about the models.")
    elif results["scale"] == "cpu":
        lines.append(f"**CPU scale** (`configs/quality/cpu/{results['experiment']}.yaml` on top of the GPU configs): "
                     "smaller models, windows and batches and far fewer training positions than the GPU configs "
                     "(see the table); a small-scale check of the comparison, not the paper's regime.")
    lines.append("Reproduce: " + "; then ".join(f"`{c}`" for c in results["commands"]))
    return lines


def config_label(prefix: str, name: str, scale: str) -> str:
    """The config file(s) that define model ``name`` at ``scale``, as named in the reports."""
    label = f"configs/quality/{prefix}-{name}.yaml"
    return label if scale == "gpu" else f"{label} + configs/quality/{scale}/{prefix}.yaml"


def model_table(results: dict, unit: str) -> list[str]:
    """One row per model: shape, size, FLOPs, data, time, final held-out bits and compression."""
    lines = [f"| model | config | layout, d_model | params | train MFLOP/{unit} (at target) | measured train "
             f"FLOP | {unit}s seen | steps | train wall s | {unit}s/s | held-out bits/{unit} (eval sample) | "
             f"final compression |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results["models"].items():
        comp = "/".join(f"{c:.2f}" for c in m["curve"][-1]["compression"]) or "–"
        config = config_label(results["experiment"], name, results["scale"]).replace(" + ", "` + `")
        lines.append(f"| {name} | `{config}` | `{m['layout']}`, {m['d_model']} | {m['params'] / 1e6:.2f} M | "
                     f"{m['flops_per_unit'] / 1e6:.3g} | {m['flops_seen']:.3g} | {m['units_seen'] / 1e6:.2f} M | "
                     f"{m['steps']} | {m['wall_s']:.0f} | {m['tokens_per_s'] / 1e3:.1f} k | "
                     f"{m['curve'][-1]['bits_per_unit']:.4f} | {comp} |")
    return lines


def efficiency_table(results: dict, unit: str) -> list[str]:
    """Data and compute efficiency of the H-Net over each baseline (both readings)."""
    models = results["models"]
    lines = ["| baseline | data: baseline tokens to reach H-Net's final ÷ H-Net tokens | data: at the baseline's "
             "final bits | compute: baseline FLOPs to reach H-Net's final ÷ H-Net FLOPs | compute: at the "
             "baseline's final bits |", "|---|---:|---:|---:|---:|"]
    for name, m in models.items():
        if name == "hnet":
            continue
        d = factor_text(efficiency(models["hnet"]["curve"], m["curve"], "units_seen"))
        c = factor_text(efficiency(models["hnet"]["curve"], m["curve"], "flops_seen"))
        lines.append(f"| {name} | {d[0]} | {d[1]} | {c[0]} | {c[1]} |")
    return lines


# ---- boundary statistics -------------------------------------------------------------------------


def boundary_mask(track, length: int):
    """``(length,) bool``, True where the first chunking stage starts a chunk (position 0, forced,
    is left out of every count by the callers)."""
    import numpy as np

    mask = np.zeros(length, bool)
    mask[track.stages[0].starts] = True
    return mask


def tally(boundary, where) -> list[int]:
    """``[chunk starts, positions]`` over the positions where ``where`` is True."""
    return [int(boundary[where].sum()), int(where.sum())]


def rate(counts: list[int]) -> tuple[float, float]:
    """Boundary rate and its binomial standard error from ``[starts, positions]``."""
    k, n = counts
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    return p, math.sqrt(max(p * (1 - p), 1e-12) / n)
