"""The ``human`` section of ``docs/results.md`` and its figures, from ``OUT/human/results.json``
(``bench/quality_human.py``; rebuilt by ``--report-only`` without the run folders)."""
from __future__ import annotations

from pathlib import Path

import _quality_report as qr
from _report import write_section

NEUTRAL = 0.005  # bits/base: a diagnostic within this of its baseline neither helps nor hurts


def report(results: dict, out: Path) -> None:
    docs = qr.docs_dir(results, out)
    models, cut = results["models"], unfinished(results)
    ran = launches(results) or results["commands"][:1]
    caption = f"Device: {results['device']}. Commands (one per launch): " + "; then ".join(f"`{c}`" for c in ran) + "."
    lines = ["## Human DNA (GRCh37): H-Net against isotropic models, each at its tuned LR", "",
             *provenance(results), "", data_text(results), ""]
    for table in (main_table(results), pieces_table(results), unfinished_table(results), sweep_table(results)):
        lines += [*table, ""] if table else []
    if models or cut:
        drawn = {"models": {**models, **{f"{n} (cut off at {u['units_seen'] / 1e6:.0f} M)": u for n, u in cut.items()}}}
        img = qr.plot_curves(drawn, docs / "img" / "quality_human.png", "base",
                            "held out: GRCh37 chrX 60-70 Mb (spread sample), main runs at each model's tuned LR")
        lines += [f"![human curves](img/{img.name})", "", caption, ""]
    if "hnet" in models and len(models) > 1:
        lines += ["Data and compute efficiency of the 1-stage H-Net (`hnet`) over each other model (read on the "
                  "curves' best-so-far held-out bits, as in the DNA section):", "",
                  *qr.efficiency_table(results, "base"), ""]
    lines += compression_table(results) + [""] + diagnostics_table(results) + [""] + repeats_table(results) + [""]
    lines += chunk_tables(results) + [""] + variant_table(results)
    write_section(docs / "results.md", "human", "\n".join(lines))
    print("\n".join(lines))


def launches(results: dict) -> list[str]:
    """The commands of the launches that trained and scored (``sessions``), in order."""
    return [s["command"] for s in results.get("sessions", {}).values()]


def commands(results: dict) -> list[str]:
    """:func:`launches`, then the command that last rebuilt the report (earlier rebuilds, e.g. of
    one session's part, are superseded by it)."""
    ran = launches(results)
    rebuilt = [c for c in results["commands"] if c not in ran]
    return ran + rebuilt[-1:]


def provenance(results: dict) -> list[str]:
    """As :func:`_quality_report.provenance`, but from the sessions that ran the jobs when they were recorded:
    a report rebuilt from copied-back folders names their machine, not its own."""
    lines = qr.provenance(results)
    sessions = results.get("sessions")
    if sessions:
        spans = [f"{s['started']} to {s['last_seen'][11:]}" for s in sessions.values()]
        lines[0] = (f"Device: **{results['device']}**; the jobs ran in {len(spans)} launch(es) of the bench: "
                    f"{', '.join(spans)} (start to last heartbeat).")
        lines[-1] = "Reproduce: " + "; then ".join(f"`{c}`" for c in commands(results))
    return lines


def unfinished(results: dict) -> dict:
    """Main runs that a session's end cut off (no final scoring), less those finished since (merged)."""
    return {n: u for n, u in results.get("unfinished", {}).items() if n not in results["models"]}


def unfinished_table(results: dict) -> list[str]:
    cut = unfinished(results)
    if not cut:
        return []
    lines = ["Main runs cut off before their end (the device session ran out; a later session reruns them): "
             "their last held-out eval during training (chrX sample), against the finished models' eval at the "
             "same bases seen (same steps: every run shares the schedule):", "",
             "| model | layout, d_model | params | LR | bases seen / planned | last eval at | held-out bits/base | "
             + " | ".join(f"{n} there" for n in results["models"]) + " | compression |",
             "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(results["models"]) + "---:|"]
    for name, u in cut.items():
        last = u["curve"][-1]
        there = []
        for m in results["models"].values():
            row = next((r for r in m["curve"] if r["step"] == last["step"]), None)
            there.append(f"{row['bits_per_unit']:.4f}" if row else "–")
        lines.append(f"| {name} | `{u['layout']}`, {u['d_model']} | {u['params'] / 1e6:.1f} M | {u['lr']:.3g} | "
                     f"{u['units_seen'] / 1e6:.1f} M / {u['planned_bases'] / 1e6:.0f} M | "
                     f"{last['units_seen'] / 1e6:.1f} M | {last['bits_per_unit']:.4f} | " + " | ".join(there)
                     + " | " + "/".join(f"{c:.2f}" for c in last["compression"]) + " |")
    return lines


def data_text(results: dict) -> str:
    d = results["data"]
    b, c = d["bases"], d["chr22_ref_check"]
    return (f"Trained on GRCh37 chr20 ({b['train_chr20']:,} ACGT bases) and chrX [0, {d['split']['train_x_end']:,}) "
            f"({b['train_chrX']:,}); held out chrX [{d['split']['heldout_x'][0]:,}, {d['split']['heldout_x'][1]:,}) "
            f"({b['heldout_chrX']:,}) and the human rows of the chr22 EPO primate alignment ({d['maf_blocks']:,} blocks, "
            f"{b['heldout_chr22']:,}). Every record is an N-free piece: bits per base count A/C/G/T only. The chr22 "
            f"reference built from the alignment (N between blocks) matches {c['ref_match']:,} of {c['snvs']:,} 1000 "
            f"Genomes SNV REF alleles ({c['outside_alignment']:,} outside the alignment, {c['ref_mismatch']:,} "
            f"mismatched); {d['rare']:,} rare (AF < 0.01) and {d['common']:,} common (AF > 0.05) of them are scored.")


def main_table(results: dict) -> list[str]:
    lines = ["| model | layout, d_model | params | tuned LR | train MFLOP/base (at target) | bases seen | held-out "
             "chrX 60-70 Mb bits/base | chr22 bits/base | train bits/base (last 10 logs) | gap (chrX − train) | "
             "final compression |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results["models"].items():
        comp = "/".join(f"{c:.2f}" for c in m["curve"][-1]["compression"]) or "–"
        lines.append(f"| {name} | `{m['layout']}`, {m['d_model']} | {m['params'] / 1e6:.1f} M | {m['lr']:.3g} | "
                     f"{m['flops_per_unit'] / 1e6:.1f} | {m['units_seen'] / 1e6:.1f} M | {m['heldout_x']['bits']:.4f} | "
                     f"{m['heldout_22']['bits']:.4f} | {m['train_bits_end']:.4f} | "
                     f"{m['heldout_x']['bits'] - m['train_bits_end']:+.4f} | {comp} |")
    return ["Final held-out bits per base of each main run (whole held-out sets unless `--score-bases`; "
            "bases scored: " + ", ".join(f"{n} {m['heldout_x']['bases']:,} / {m['heldout_22']['bases']:,}"
                                         for n, m in results["models"].items()) + "):", "", *lines]


def pieces_table(results: dict) -> list[str]:
    """Held-out chrX bits per scored piece (``heldout_x.pieces``, saved by runs since 2026-12-02):
    the chrX sample is a few 1 Mbp pieces, and the first begins at the centromere's repeats."""
    pieces = {n: m["heldout_x"]["pieces"] for n, m in results["models"].items() if "pieces" in m["heldout_x"]}
    if not pieces:
        return []
    ids = list(next(iter(pieces.values())))
    lines = ["Held-out chrX bits/base by scored piece (bases scored in brackets):", "",
             "| model | " + " | ".join(f"{i} ({next(iter(pieces.values()))[i][0]:,})" for i in ids) + " |",
             "|---|" + "---:|" * len(ids)]
    for name, rows in pieces.items():
        lines.append(f"| {name} | " + " | ".join(f"{rows[i][1]:.4f}" if i in rows else "–" for i in ids) + " |")
    return lines


def sweep_table(results: dict) -> list[str]:
    by_model: dict[str, dict] = {}
    for row in results.get("sweep", {}).values():
        by_model.setdefault(row["model"], {})[row["lr"]] = row["bits"]
    lrs = sorted({lr for rows in by_model.values() for lr in rows})
    if not lrs:
        return []
    bases = next(iter(results["sweep"].values()))["bases"]
    lines = [f"Learning-rate sweep ({bases / 1e6:.1f} M bases per run, last held-out eval on the chrX sample; "
             "bold: the LR of the main run; warmup and WSD schedule shared):", "",
             "| model | " + " | ".join(f"lr {lr:.3g}" for lr in lrs) + " |", "|---|" + "---:|" * len(lrs)]
    for model, rows in by_model.items():
        cells = [("**{:.4f}**" if lr == results["best_lr"].get(model) else "{:.4f}").format(rows[lr])
                 if lr in rows else "–" for lr in lrs]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model, rows in by_model.items():
        main_lr = results["best_lr"].get(model)
        if main_lr in rows and min(rows.values()) < rows[main_lr]:
            lr = min(rows, key=rows.get)
            lines += ["", f"**{model}: lr {lr:.3g} did better in the sweep ({rows[lr]:.4f} against {rows[main_lr]:.4f}) "
                          f"than the main run's {main_lr:.3g}**, which was fixed (`--best-lr`) before that sweep run ended."]
    return lines


def compression_table(results: dict) -> list[str]:
    lines = ["Router compression over training (held-out eval sample, bases per chunk per stage) against the target:", "",
             "| model | target | " + " | ".join(f"eval {i}" for i in range(1, 9)) + " |", "|---|---|" + "---:|" * 8]
    for name, m in {**results["models"], **unfinished(results)}.items():
        if not m["curve"][-1]["compression"]:
            continue
        evals = [r for r in m["curve"] if r["units_seen"] > 0][-8:]
        cells = ["/".join(f"{c:.2f}" for c in r["compression"]) for r in evals]
        lines.append(f"| {name} | {'/'.join(f'{t:g}' for t in results['targets'][name])} | " + " | ".join(cells) + " |")
    return lines


def diagnostics_table(results: dict) -> list[str]:
    diag = results.get("diagnostics", {})
    if not diag:
        return []
    base_lr = results["best_lr"].get("hnet")
    base = next((r for r in results["sweep"].values() if r["model"] == "hnet" and r["lr"] == base_lr), None)
    against = (f"its sweep run at that LR ({base['bits']:.4f} bits/base)" if base else
               "its sweep run at that LR, which is not in these results (`--merge-from` the --out-dir that has it)")
    lines = [f"Why: diagnostic runs of the 1-stage H-Net at its tuned LR ({base_lr:.3g}) and the sweep budget, against "
             f"{against}. Main-network type is `hnet` (T15) vs `hnet-m` (M10) above; the train-vs-held-out gap is in "
             f"the first table. Within ±{NEUTRAL} bits of the baseline a change is read as no effect.", "",
             "| change | held-out bits/base | Δ vs baseline | final compression | reading |", "|---|---:|---:|---:|---|"]
    for row in diag.values():
        comp = "/".join(f"{c:.2f}" for c in row["compression"])
        if base is None:
            lines.append(f"| {row['what']} | {row['bits']:.4f} | – | {comp} | – |")
            continue
        delta = row["bits"] - base["bits"]
        reading = "helps (a cause)" if delta < -NEUTRAL else "hurts" if delta > NEUTRAL else "no effect (ruled out)"
        lines.append(f"| {row['what']} | {row['bits']:.4f} | {delta:+.4f} | {comp} | {reading} |")
    return lines


def repeats_table(results: dict) -> list[str]:
    """The runs made again in a later launch (same command, same seed), each launch's result: the
    run-to-run noise that GPU kernels with atomic adds leave (``repeats`` of ``merge_results``)."""
    repeats = results.get("repeats", {})
    if not repeats:
        return []
    lines = ["Run-to-run noise: runs made again in a later launch with the same command and seed (GPU kernels "
             "with atomic adds are not bitwise deterministic); held-out bits/base per launch, oldest first, the "
             "last is the run reported above:", "",
             "| run | chrX 60-70 Mb per launch | spread | chr22 per launch | spread |", "|---|---|---:|---|---:|"]
    for name, old in repeats.get("models", {}).items():
        runs = [*old, results["models"][name]]
        x, c22 = ([r[k]["bits"] for r in runs] for k in ("heldout_x", "heldout_22"))
        lines.append(f"| {name} (main) | {' / '.join(f'{b:.4f}' for b in x)} | {max(x) - min(x):.4f} | "
                     f"{' / '.join(f'{b:.4f}' for b in c22)} | {max(c22) - min(c22):.4f} |")
    for name, old in repeats.get("diagnostics", {}).items():
        bits = [r["bits"] for r in (*old, results["diagnostics"][name])]
        lines.append(f"| diagnostic {name} (chrX sample) | {' / '.join(f'{b:.4f}' for b in bits)} | "
                     f"{max(bits) - min(bits):.4f} | – | – |")
    return lines


def chunk_tables(results: dict) -> list[str]:
    lines = ["What the chunks learn: first-stage chunk starts per base by sequence class (held-out chrX for CpG, "
             "tandem repeats and low complexity; held-out chr22 alignment rows for human/chimp differences), "
             "± binomial s.e.:", ""]
    hnets = {n: m["chunks"] for n, m in results["models"].items() if "chunks" in m}
    if not hnets:
        return []
    keys = list(next(iter(hnets.values()))["counts"])
    lines += ["| positions | " + " | ".join(hnets) + " |", "|---|" + "---:|" * len(hnets)]
    for key in keys:
        cells = []
        for c in hnets.values():
            p, se = qr.rate(c["counts"].get(key, [0, 0]))
            cells.append(f"{p:.4f} ± {se:.4f} ({c['counts'].get(key, [0, 0])[1]:,})")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Chunk-start rate at offsets from CpG C's and from diverged bases (offset 0: the site):", "",
              "| model | site | " + " | ".join(str(o) for o in range(-3, 4)) + " |", "|---|---|" + "---:|" * 7]
    for name, c in hnets.items():
        lo = c["offsets"][0]
        for site, (k, n) in c["profiles"].items():
            cells = [f"{k[o - lo] / max(n[o - lo], 1):.4f}" for o in range(-3, 4)]
            lines.append(f"| {name} | {site} | " + " | ".join(cells) + " |")
    return lines


def variant_table(results: dict) -> list[str]:
    lines = ["Variant scores (−(LL(alt) − LL(ref)), window = training window) as classifiers, AUROC with a 95% "
             "bootstrap interval (1000 resamples); 0.5 is chance:", "",
             "| model | pathogenic vs common (97 SNVs) | rare (AF < 0.01) vs common (AF > 0.05), 1000G chr22 |",
             "|---|---:|---:|"]
    for name, m in results["models"].items():
        cells = []
        for key in ("pathogenic_vs_common", "rare_vs_common_chr22"):
            v = m["variants"][key]
            cells.append(f"{v['auroc']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] ({v['positives']} vs {v['negatives']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
