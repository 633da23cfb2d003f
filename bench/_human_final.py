"""The human bench's final scoring of a main run (``bench/quality_human.py``): both held-out sets,
the H-Nets' chunk starts against sequence features, and the variant AUROCs."""
from __future__ import annotations

import json
from pathlib import Path

import _human as h
import _quality as q
import _quality_report as qr
from _human_plan import HNETS, load_run


def spread_records(adapter, path: str, cap: float | None, piece: int = 1 << 20) -> list:
    """The records of ``path`` (N-free pieces), cut into ``piece``-base parts of which evenly
    spaced ones are kept up to ``cap`` bases (all when ``cap`` is None)."""
    from hnet_seq.modalities.base import Record

    parts = []
    for r in adapter.read_records([path]):
        contig, span = r.id.rsplit(":", 1)
        start = int(span.split("-")[0])
        for a in range(0, len(r.data), piece):
            b = min(a + piece, len(r.data))
            parts.append(Record(f"{contig}:{start + a}-{start + b}", r.data[a:b],
                                {**r.meta, "mask": r.meta["mask"][a:b], "contig": contig, "start": start + a,
                                 "end": start + b}))
    total = sum(len(p.data) for p in parts)
    if cap is None or total <= cap:
        return parts
    keep = max(1, int(len(parts) * cap / total))
    return [parts[i] for i in sorted({round(k * (len(parts) - 1) / max(keep - 1, 1)) for k in range(keep)})]


def final_one(args, spec: dict, data: dict) -> None:
    """Score one main run on both held-out sets, its chunks (H-Nets) and the variant sets."""
    from hnet_seq.inference import score
    from hnet_seq.train.metrics import read_metrics

    cfg, run_dir = load_run(args, spec), args.out / spec["id"]
    im = q.load_inference_model(run_dir, cfg.train.device)
    window = cfg.data.seq_len
    train_rows = [r["bits_per_unit"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    out = {**q.run_summary(run_dir), "lr": spec["lr"], "train_bits_end": sum(train_rows[-10:]) / len(train_rows[-10:])}
    for key in ("heldout_x", "heldout_22"):
        s = score(im, records=spread_records(im.adapter, data[key], args.score_bases), window=window, progress=False)
        # per piece too: the chrX sample is three 1 Mbp pieces, one of them pericentromeric repeats
        out[key] = {"bits": s.bits_per_unit, "bases": int(sum(x.units_scored for x in s.scores)),
                    "pieces": {x.seq_id: [x.units_scored, x.bits_per_unit] for x in s.scores}}
    if spec["model"] in HNETS:
        out["chunks"] = chunk_analysis(im, data, args, window, args.out / "final" / f"{spec['model']}-boundaries.npz")
    out["variants"] = variant_aurocs(im, data, args, window)
    q.write_results(out, args.out / "final" / f"{spec['model']}.json")


def chunk_analysis(im, data: dict, args, window: int, saved: Path) -> dict:
    """First-stage chunk starts of held-out chrX and of the chr22 alignment rows, saved to ``saved``
    (:func:`save_boundaries`) and counted by :func:`chunk_counts`."""
    from hnet_seq.inference import boundary_tracks

    def tracked(key):
        recs = spread_records(im.adapter, data[key], args.analysis_bases)
        for track, rec in zip(boundary_tracks(im, recs, window=window), recs):
            yield {"id": rec.id, "start": rec.meta["start"], "tokens": rec.data,
                   "boundary": qr.boundary_mask(track, len(rec.data))}

    chrx = list(tracked("heldout_x"))
    blocks = {b.start: b for b in h.maf_blocks(Path(json.loads((args.out / "data" / "data.json").read_text())["sources"]["maf"]))}
    chr22 = []
    for rec in tracked("heldout_22"):
        block = blocks.get(max((s for s in blocks if s <= rec["start"]), default=-1))
        if block is not None:
            a, n = rec["start"] - block.start, len(rec["tokens"])
            chr22.append({**rec, "diverged": block.diverged[a:a + n], "chimp_gap": block.chimp_gap[a:a + n]})
    save_boundaries(saved, {"chrX": chrx, "chr22": chr22})
    return chunk_counts(chrx, chr22)


def chunk_counts(chrx: list[dict], chr22: list[dict]) -> dict:
    """``[starts, positions]`` per sequence class and profiles around CpG and diverged bases, from
    records of ``tokens`` (L,) and ``boundary`` (L,) bool (chr22's also ``diverged`` and ``chimp_gap``)."""
    import numpy as np
    from quality_dna import tandem_repeats

    counts: dict[str, list[int]] = {}
    prof = {"CpG (C of CG)": np.zeros((2, 21), np.int64), "diverged base": np.zeros((2, 21), np.int64)}

    def add(key, pair):
        counts[key] = [a + b for a, b in zip(counts.get(key, [0, 0]), pair)]

    for rec in chrx:
        tokens, bnd = rec["tokens"], rec["boundary"]
        valid = np.arange(len(tokens)) > 0
        cpg, rep, low = h.cpg_features(tokens), tandem_repeats(tokens), h.low_complexity(tokens)
        for key, where in (("all (chrX)", valid), ("CpG dinucleotide", cpg["cpg"]), ("not CpG", ~cpg["cpg"]),
                           ("CpG-rich window (island rule)", cpg["island"]), ("outside CpG-rich windows", ~cpg["island"]),
                           ("tandem repeat (period 1-24)", rep), ("outside tandem repeats", ~rep),
                           ("low complexity (symmetric DUST, level 20)", low), ("not low complexity", ~low)):
            add(key, qr.tally(bnd, valid & where))
        prof["CpG (C of CG)"] += h.profile(bnd, np.flatnonzero(cpg["cpg"][:-1] & (tokens[:-1] == 1)), -10, 11)
    for rec in chr22:
        bnd, div, gap = rec["boundary"], rec["diverged"], rec["chimp_gap"]
        valid = np.arange(len(bnd)) > 0
        for key, where in (("all (chr22)", valid), ("human/chimp diverged base", div),
                           ("identical in chimp", ~div & ~gap), ("chimp gap", gap)):
            add(key, qr.tally(bnd, valid & where))
        prof["diverged base"] += h.profile(bnd, np.flatnonzero(div), -10, 11)
    return {"counts": counts, "profiles": {k: v.tolist() for k, v in prof.items()}, "offsets": [-10, 11]}


BOOLS = ("boundary", "diverged", "chimp_gap")  # bit-packed in the npz


def save_boundaries(path: Path, sets: dict[str, list[dict]]) -> None:
    """Write each set's records to ``path`` (``np.savez_compressed``): ``{set}_id``, ``_start``,
    ``_length`` per record; ``_tokens`` (uint8) and the packed ``_boundary`` (and chr22's
    ``_diverged``, ``_chimp_gap``) of all its records end to end."""
    import numpy as np

    from hnet_seq.runtime.atomic import atomic_write

    arrays = {}
    for name, recs in sets.items():
        arrays |= {f"{name}_id": np.array([r["id"] for r in recs], str),
                   f"{name}_start": np.array([r["start"] for r in recs], np.int64),
                   f"{name}_length": np.array([len(r["tokens"]) for r in recs], np.int64),
                   f"{name}_tokens": np.concatenate([np.asarray(r["tokens"], np.uint8) for r in recs] or [np.zeros(0, np.uint8)])}
        for key in BOOLS:
            if recs and key in recs[0]:
                arrays[f"{name}_{key}"] = np.packbits(np.concatenate([r[key] for r in recs]))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz" to it
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def load_boundaries(path: Path) -> dict[str, list[dict]]:
    """The sets :func:`save_boundaries` wrote, as lists of record dicts."""
    import numpy as np

    with np.load(path) as z:
        names = [k[:-len("_id")] for k in z.files if k.endswith("_id")]
        sets = {}
        for name in names:
            lengths = z[f"{name}_length"]
            cuts = np.cumsum(lengths)[:-1]
            cols = {"tokens": np.split(z[f"{name}_tokens"], cuts)}
            for key in BOOLS:
                if f"{name}_{key}" in z.files:
                    cols[key] = np.split(np.unpackbits(z[f"{name}_{key}"], count=int(lengths.sum())).astype(bool), cuts)
            sets[name] = [{"id": str(i), "start": int(s), **{k: v[j] for k, v in cols.items()}}
                          for j, (i, s) in enumerate(zip(z[f"{name}_id"], z[f"{name}_start"]))]
    return sets


def counts_from_tracks(saved: Path) -> dict:
    """:func:`chunk_counts` of the boundary tracks that :func:`save_boundaries` wrote to ``saved``."""
    sets = load_boundaries(saved)
    return chunk_counts(sets["chrX"], sets["chr22"])


def recount_chunks(final_dir: Path, models: list[str]) -> list[str]:
    """Recompute the ``chunks`` of ``final_dir/<model>.json`` from its ``<model>-boundaries.npz``
    (no model, no GPU); returns the models redone (those with both files)."""
    done = []
    for m in models:
        path, saved = final_dir / f"{m}.json", final_dir / f"{m}-boundaries.npz"
        if path.exists() and saved.exists():
            q.write_results({**json.loads(path.read_text()), "chunks": counts_from_tracks(saved)}, path)
            done.append(m)
    return done


def variant_aurocs(im, data: dict, args, window: int) -> dict:
    """AUROC of −score (LL(alt) − LL(ref)) for pathogenic vs common and rare vs common SNVs."""
    import numpy as np
    import pysam

    from hnet_seq.inference import score_variants

    src = json.loads((args.out / "data" / "data.json").read_text())["sources"]
    labels = {}
    with pysam.VariantFile(src["snvs"]) as vf:
        for rec in vf:
            labels[(rec.chrom, rec.pos, rec.alts[0])] = rec.info["LABEL"] == "Pathogenic"
    scored = {}
    for ref in (src["chr20"], src["chrx"]):
        s = score_variants(im, src["snvs"], ref, window=window, keep_alleles=True, progress=False)
        scored |= {(a.chrom, a.pos, a.alt): a.score for a in s.alleles_list if a.status == "scored"}
    keys = [k for k in labels if k in scored]
    out = {"pathogenic_vs_common": h.auroc(-np.array([scored[k] for k in keys]), np.array([labels[k] for k in keys]))}
    vcf, labels = thinned_classes(Path(data["vcf22_classes"]), args.max_variants, args.out / "final" / f"{id(im)}.vcf")
    s = score_variants(im, vcf, data["ref22"], window=window, keep_alleles=True, progress=False)
    pairs = [(labels[(a.pos, a.alt)], a.score) for a in s.alleles_list if a.status == "scored"]
    out["rare_vs_common_chr22"] = h.auroc(-np.array([p[1] for p in pairs]), np.array([p[0] for p in pairs]))
    vcf.unlink()
    return out


def thinned_classes(vcf: Path, max_variants: int | None, out: Path) -> tuple[Path, dict]:
    """Every k-th record of the rare/common VCF (at most ``max_variants``) and its labels (rare: True)."""
    import pysam

    with pysam.VariantFile(str(vcf)) as vf:
        recs = list(vf)
        step = max(1, len(recs) // max_variants) if max_variants else 1
        out.parent.mkdir(parents=True, exist_ok=True)
        with pysam.VariantFile(str(out), "w", header=vf.header) as w:
            for rec in recs[::step]:
                w.write(rec)
    labels = {(r.pos, r.alts[0]): float(r.info["AF"][0] if isinstance(r.info["AF"], tuple) else r.info["AF"]) < 0.01
              for r in recs[::step]}
    return out, labels
