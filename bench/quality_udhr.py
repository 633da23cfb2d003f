"""Text: a byte-level 1-stage H-Net against a FLOP-matched isotropic byte model on 388 languages.

    python bench/quality_udhr.py --out-dir runs/quality                     # one H100, see docs/results.md
    python bench/quality_udhr.py --report-only --out-dir runs/quality       # plots + docs from results.json
    for m in hnet mamba2 transformer; do python bench/quality_udhr.py --models $m --out-dir runs/q/$m & done; wait
    python bench/quality_udhr.py --out-dir runs/quality --merge-from runs/q/hnet runs/q/mamba2 runs/q/transformer
    nice python bench/quality_udhr.py --scale cpu --out-dir runs/quality    # 2-core CPU, about 25 min
    python bench/quality_udhr.py --smoke --out-dir /tmp/quality-smoke       # CPU, tiny models, < 1 min

Data: the Universal Declaration of Human Rights in 388 languages (``../shared/data/text/udhr2``,
one UTF-8 file per language, some empty).  The last 10% of every language is held out as one
contiguous span and never trained on (``data.heldout_by: region``); the models are
``configs/quality/udhr-{hnet,mamba2}.yaml`` (``--models hnet,mamba2,transformer`` adds the
Transformer): the same data, optimiser, schedule and bytes seen, the baseline's depth matched
to the H-Net's training FLOPs per byte at its target compression (6).

After training, every language's held-out span is scored on its own (a BOS, then the span;
:func:`hnet_seq.inference.score`), giving held-out bits per byte per language.  The language's
script is its text's dominant Unicode script: the first word of ``unicodedata.name`` of its
letters (LATIN, CYRILLIC, ETHIOPIC, CJK, ...), the most frequent one.  The H-Net's chunks on the
held-out spans give its compression per language (bytes and characters per chunk) and the
boundary rate at characters after a space or punctuation, at spaces and punctuation themselves,
at other characters, and inside multi-byte UTF-8 characters.

At ``--scale cpu`` the models, windows and batches are those of ``configs/quality/cpu/udhr.yaml``
(dna-tiny-sized), and the evaluations during training read a spread sample of the held-out spans;
the final per-language scoring still reads every held-out span whole.

Writes ``OUT/udhr/results.json``, ``docs/img/quality_udhr*.png``, the per-language table
``docs/results_udhr_languages.csv`` and the ``udhr`` and ``text_chunks`` sections of
``docs/results.md`` (a smoke run: ``OUT/docs/``); at ``--scale cpu`` the folder, images, table
and sections carry a ``_cpu`` suffix.
"""
from __future__ import annotations

import csv
import math
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quality as q  # noqa: E402
import _quality_report as qr  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

MODELS = ["hnet", "mamba2", "transformer"]
DEFAULT_MODELS = "hnet,mamba2"
MIN_SPAN = 64  # bytes: shorter held-out spans (empty files) are left out of the per-language table
CLASSES = ["after a space", "after punctuation", "space", "punctuation", "other character",
           "inside a UTF-8 character"]


# ---- languages -----------------------------------------------------------------------------------


def dominant_script(text: str) -> str:
    """The most frequent first word of ``unicodedata.name`` over the text's letters (``?`` if none)."""
    names = Counter(unicodedata.name(c, "?").split()[0] for c in text if c.isalpha())
    return names.most_common(1)[0][0] if names else "?"


def heldout_spans(adapter, directory: Path, fraction: float, max_bytes: int | None) -> list:
    """Every language's held-out tail as a Record, exactly the positions the training run held out.

    The run splits each record's *model positions* (a BOS, then the bytes) with
    :func:`hnet_seq.data.split_by_region`; held-out positions ``[s, n)`` are the bytes from
    ``s - 1`` on (position ``s - 1``, the last training target, is byte ``s - 2``).
    """
    from hnet_seq.data import split_by_region
    from hnet_seq.modalities.base import Record

    spans = []
    for rec in adapter.read_records([directory]):
        prefix = len(adapter.encode(rec)) - len(rec.data)
        n = len(rec.data) + prefix
        held = split_by_region({rec.id: n}, fraction, where="end").heldout
        if not held:
            continue
        data = rec.data[held[0].start - prefix:][:max_bytes]
        if len(data) >= MIN_SPAN:
            text = bytes(rec.data).decode("utf-8", "replace")
            spans.append(Record(rec.meta["lang"], data, {"script": dominant_script(text), "file_bytes": len(rec.data)}))
    return spans


def char_classes(data: bytes) -> np.ndarray:
    """``(len(data),) int8``: the :data:`CLASSES` index of every byte (by the character it starts)."""
    from hnet_seq.inference.chunks import utf8_cells

    out = np.full(len(data), CLASSES.index("inside a UTF-8 character"), np.int8)
    prev = ""
    for ch, start, _ in utf8_cells(data):
        punct = unicodedata.category(ch).startswith("P")
        if ch.isspace():
            k = "space"
        elif punct:
            k = "punctuation"
        elif prev.isspace():
            k = "after a space"
        elif prev and unicodedata.category(prev).startswith("P"):
            k = "after punctuation"
        else:
            k = "other character"
        out[start] = CLASSES.index(k)
        prev = ch
    return out


def language_chunks(im, spans: list, window: int) -> dict:
    """Per language: chunks, characters, and ``[chunk starts, positions]`` per character class."""
    from hnet_seq.inference import boundary_tracks

    out = {}
    for track, rec in zip(boundary_tracks(im, spans, window=window), spans):
        data = bytes(np.asarray(rec.data, np.uint8))
        bnd = qr.boundary_mask(track, len(data))
        classes = char_classes(data)
        valid = np.arange(len(data)) > 0  # position 0 is a forced boundary
        out[rec.id] = {"chunks": int(bnd.sum()), "chars": len(data.decode("utf-8", "replace")),
                       "classes": {c: qr.tally(bnd, valid & (classes == i)) for i, c in enumerate(CLASSES)}}
    return out


# ---- experiment ----------------------------------------------------------------------------------


def run(args, out: Path) -> dict:
    from hnet_seq.inference import score

    t0 = time.perf_counter()
    cfgs = q.load_configs("udhr", MODELS, scale=args.scale, tokens=args.tokens, evals=args.evals, smoke=args.smoke,
                          device=args.device)
    match = q.flop_match(cfgs)
    q.use_training_threads(cfgs)
    results = q.start_results(out / "results.json", "udhr", args)
    max_bytes = 512 if args.smoke else None
    for name in args.models:
        cfg, run_dir = cfgs[name], out / name
        q.train_model(cfg, run_dir, [str(args.data_dir)])
        im = q.load_inference_model(run_dir, args.device)
        spans = heldout_spans(im.adapter, args.data_dir, cfg.data.heldout_fraction, max_bytes)
        scored = score(im, records=spans, window=cfg.data.seq_len, progress=False)
        results["languages"] = {r.id: {"script": r.meta["script"], "bytes": len(r.data), **results.get(
            "languages", {}).get(r.id, {})} for r in spans}
        for s in scored.scores:
            results["languages"][s.seq_id][f"bits_{name}"] = -s.log_likelihood / (s.units_scored * math.log(2))
        if name == "hnet":
            for lang, row in language_chunks(im, spans, cfg.data.seq_len).items():
                results["languages"][lang]["hnet_chunks"] = row
        results["models"][name] = {**match[name], **q.run_summary(run_dir)}
        del im
        q.save_results(results, out / "results.json", t0)
    return results


# ---- report ------------------------------------------------------------------------------------


def by_script(languages: dict) -> dict[str, list[str]]:
    """Languages per script, scripts with the most languages first."""
    groups: dict[str, list[str]] = {}
    for lang, row in sorted(languages.items()):
        groups.setdefault(row["script"], []).append(lang)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs, groups, models = results["languages"], by_script(results["languages"]), list(results["models"])
    x = np.arange(len(groups))
    fig, axes = plt.subplots(3, 1, figsize=(max(10, 0.45 * len(groups)), 12), sharex=True)
    rng = np.random.default_rng(0)
    for j, name in enumerate(models):
        for i, members in enumerate(groups.values()):
            ys = [langs[m][f"bits_{name}"] for m in members if f"bits_{name}" in langs[m]]
            xs = i + (j - (len(models) - 1) / 2) * 0.25 + rng.uniform(-0.06, 0.06, len(ys))
            axes[0].scatter(xs, ys, s=8, color=qr.COLOURS.get(name), alpha=0.6, label=name if i == 0 else None)
    axes[0].set(ylabel="held-out bits per byte", title="held-out bits per byte per language, grouped by script")
    axes[0].legend(fontsize=8)
    chunked = {m: langs[m]["hnet_chunks"] for m in langs if "hnet_chunks" in langs[m]}
    for i, members in enumerate(groups.values()):
        rows = [(langs[m]["bytes"] / chunked[m]["chunks"], chunked[m]["chars"] / chunked[m]["chunks"])
                for m in members if m in chunked]
        xs = i + rng.uniform(-0.12, 0.12, len(rows))
        axes[1].scatter(xs - 0.15, [r[0] for r in rows], s=8, color="C3", alpha=0.6, label="bytes per chunk" if i == 0 else None)
        axes[1].scatter(xs + 0.15, [r[1] for r in rows], s=8, color="C1", alpha=0.6, label="characters per chunk" if i == 0 else None)
    axes[1].set(ylabel="H-Net compression", title="learned compression per language (held-out spans)")
    axes[1].legend(fontsize=8)
    width = 0.8 / len(CLASSES)
    for k, cls in enumerate(CLASSES):
        rates = [qr.rate(script_tally(chunked, members, cls))[0] for members in groups.values()]
        axes[2].bar(x + (k - (len(CLASSES) - 1) / 2) * width, rates, width, label=cls)
    axes[2].set(ylabel="chunk starts per position", title="H-Net boundary rate by position class")
    axes[2].legend(fontsize=7, ncol=3)
    axes[2].set_xticks(x, [f"{s} ({len(m)})" for s, m in groups.items()], rotation=60, ha="right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def script_tally(chunked: dict, members: list[str], cls: str) -> list[int]:
    """``[chunk starts, positions]`` of class ``cls`` summed over a script's languages."""
    rows = [chunked[m]["classes"][cls] for m in members if m in chunked]
    return [sum(r[0] for r in rows), sum(r[1] for r in rows)]


def write_csv(results: dict, path: Path) -> Path:
    models = list(results["models"])
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["language", "script", "heldout_bytes", *[f"bits_per_byte_{m}" for m in models],
                    "hnet_bytes_per_chunk", "hnet_chars_per_chunk"])
        for lang, row in sorted(results["languages"].items()):
            c = row.get("hnet_chunks")
            w.writerow([lang, row["script"], row["bytes"], *[f"{row[f'bits_{m}']:.4f}" if f"bits_{m}" in row else ""
                                                            for m in models],
                        f"{row['bytes'] / c['chunks']:.3f}" if c else "", f"{c['chars'] / c['chunks']:.3f}" if c else ""])
    return path


def report(results: dict, out: Path) -> None:
    docs, suffix = qr.docs_dir(results, out), q.scale_suffix(results["scale"])
    langs, models = results["languages"], list(results["models"])
    groups = by_script(langs)
    curves = qr.plot_curves(results, docs / "img" / f"quality_udhr_curves{suffix}.png", "byte",
                           "held out: the last 10% of each of 388 UDHR languages")
    fig = plot(results, docs / "img" / f"quality_udhr{suffix}.png")
    table = write_csv(results, docs / f"results_udhr_languages{suffix}.csv")
    head = ["script", "languages", "held-out bytes", *[f"bits/byte {m} (mean over languages)" for m in models]]
    if "hnet" in models and len(models) > 1:
        head.append("languages where H-Net < " + ", ".join(m for m in models if m != "hnet"))
    head += ["H-Net bytes per chunk", "H-Net chars per chunk"]
    rows = []
    for script, members in groups.items():
        row = [script, len(members), f"{sum(langs[m]['bytes'] for m in members):,}"]
        for m in models:
            vals = [langs[x][f"bits_{m}"] for x in members if f"bits_{m}" in langs[x]]
            row.append(f"{np.mean(vals):.3f}" if vals else "–")
        if "hnet" in models and len(models) > 1:
            wins = sum(all(langs[x]["bits_hnet"] < langs[x][f"bits_{b}"] for b in models if b != "hnet")
                       for x in members)
            row.append(f"{wins}/{len(members)}")
        chunked = [langs[x]["hnet_chunks"] | {"bytes": langs[x]["bytes"]} for x in members if "hnet_chunks" in langs[x]]
        total_chunks = sum(c["chunks"] for c in chunked)
        row += [f"{sum(c['bytes'] for c in chunked) / total_chunks:.2f}" if total_chunks else "–",
                f"{sum(c['chars'] for c in chunked) / total_chunks:.2f}" if total_chunks else "–"]
        rows.append(row)
    lines = ["## Text: byte-level H-Net against an isotropic byte model on 388 UDHR languages", "",
             *qr.provenance(results), "",
             f"Held out: the last 10% of every language (a contiguous span, never trained on); {len(langs)} languages "
             f"have ≥ {MIN_SPAN} held-out bytes. Curves: held-out bits per byte over all held-out spans together "
             "during training (a fixed sample of them where `data.eval_tokens` is smaller than the set); the "
             "per-script table scores each language's whole span on its own at the end.", "",
             *qr.model_table(results, "byte"), "", pooled_line(results), ""]
    if "hnet" in models and len(models) > 1:
        lines += ["Data and compute efficiency of the H-Net, read as for DNA (cosine schedule):", "",
                  *qr.efficiency_table(results, "byte"), ""]
    lines += [markdown_table(head, rows), "",
              f"Per language: [`docs/{table.name}`]({table.name}).", "",
              f"![UDHR curves](img/{curves.name})", "", f"![UDHR by script](img/{fig.name})"]
    write_section(docs / "results.md", f"udhr{suffix}", "\n".join(lines))
    write_section(docs / "results.md", f"text_chunks{suffix}", "\n".join(chunk_lines(results, groups)))
    print("\n".join(lines))


def pooled_line(results: dict) -> str:
    """Bits per byte over every held-out byte (each language's span scored on its own, then pooled):
    the end-of-run counterpart of the curves' sample, weighted by bytes, not by language."""
    langs = results["languages"]
    cells = []
    for m in results["models"]:
        scored = [row for row in langs.values() if f"bits_{m}" in row]
        total = sum(row["bytes"] for row in scored)
        cells.append(f"{m} **{sum(row[f'bits_{m}'] * row['bytes'] for row in scored) / total:.4f}**")
    return (f"All held-out spans pooled ({sum(r['bytes'] for r in langs.values()):,} bytes, each language scored "
            f"on its own): bits per byte {', '.join(cells)}.")


def chunk_lines(results: dict, groups: dict) -> list[str]:
    langs = results["languages"]
    chunked = {m: langs[m]["hnet_chunks"] for m in langs if "hnet_chunks" in langs[m]}
    head = ["script", "languages", *[f"{c}" for c in CLASSES]]
    rows = []
    for script, members in groups.items():
        cells = []
        for cls in CLASSES:
            k, n = script_tally(chunked, members, cls)
            cells.append(f"{k / n:.3f} ({n:,})" if n else "–")
        rows.append([script, len(members), *cells])
    return ["## What text chunks learn", "", *qr.provenance(results), "",
            "The H-Net's chunk starts on the held-out spans, per script: the share of positions of each class "
            "that start a chunk (positions in brackets). A position is the first byte of a character after a "
            "space (a word start), after punctuation, a space, a punctuation mark, any other character, or a "
            "byte inside a multi-byte UTF-8 character.", "",
            markdown_table(head, rows), "",
            "The third panel of the figure above plots these rates."]


def main() -> None:
    q.cli(__doc__, "udhr", "bytes", MODELS, DEFAULT_MODELS, q.SHARED_DATA / "text" / "udhr2", run, report)


if __name__ == "__main__":
    main()
