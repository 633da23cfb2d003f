"""Human DNA: does the H-Net beat FLOP-matched isotropic models on GRCh37, each model at its own tuned LR?

    python tools/fetch_grch37.py --device-dir .data/human                  # the data (49.9 MiB), once
    setsid nohup python bench/quality_human.py --out-dir /tmp/qh > /tmp/qh.log 2>&1 &   # one H200
    cat /tmp/qh/human/status.txt                                           # progress and ETA
    OUT=$OUT bash bench/qh_poll.sh /tmp/qh 540                             # wait, report, bring back $OUT/qh.tgz
    python bench/quality_human.py --report-only --out-dir runs/qh          # docs from a copied-back results.json
    python bench/quality_human.py --out-dir runs/qh --merge-from A B       # join results of separate sessions
    python bench/quality_human.py --smoke --out-dir /tmp/qh-smoke          # CPU, tiny models, tests/data excerpt

Data (``--data-dir``, from ``tools/fetch_grch37.py``; or any GRCh37/GRCh38 FASTA by ``--chr20``/``--chrx``,
contigs ``20``/``chr20`` and ``X``/``chrX``): trained on chr20 and chrX [0, 60 Mb); held out chrX
[60, 70 Mb) and the human rows of the chr22 EPO primate alignment (``Bio.AlignIO`` MAF).  Every
record is an N-free piece (``_human``), so bits per base count A/C/G/T only.

The plan (``--workers N``: that many training processes at once on the one GPU; 0: in this process):
1. sweep: every model at ``--lr-factors`` × its config's ``optim.lr``, ``--sweep-fraction`` of the budget;
2. main: every model at its best sweep LR (last held-out eval) for ``--budget-bases``, and the
   diagnostics at the sweep budget and the H-Net's best LR: LR multipliers off, ratio-loss weight
   0.01 and 0.1, 5× warmup (compared with the sweep run at that LR);
3. final: each main model scores held-out chrX and chr22 (:func:`hnet_seq.inference.score`),
   H-Nets' chunk starts against CpG, CpG islands, tandem repeats, low complexity and human/chimp
   differences, and variant AUROCs (97 ClinVar/gnomAD SNVs; 1000 Genomes chr22 rare vs common,
   scored on a chr22 reference built from the alignment's human rows);
4. report: ``results.json``, figures and the ``human`` section of ``docs/results.md`` (smoke:
   ``OUT/docs``).  A finished run or final score is kept on restart.

Steps 1-3 are one job graph (``_jobs``), not three waits: a model's main run starts when its own
sweep has ended, its final scoring when its main run has, and the diagnostics when the H-Net's
sweep has, so the isotropic models' main runs fill the GPU while the slower H-Nets still sweep.

Shrinking on the spot: ``--budget-bases`` (main runs; sweep and diagnostics take ``--sweep-fraction``
of it), ``--models``, ``--lr-factors``, ``--diagnostics``, ``--evals``, ``--score-bases``,
``--analysis-bases``, ``--max-variants``; ``--phases report`` collects whatever finished into
``results.json``; ``--best-lr MODEL=LR,...`` skips an unfinished sweep in a later session.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _human as h  # noqa: E402
import _jobs  # noqa: E402
import _quality as q  # noqa: E402
from _report import REPO_ROOT, command_line  # noqa: E402

MODELS = ["hnet", "hnet-m", "hnet2", "mamba2", "transformer"]
HNETS = ("hnet", "hnet-m", "hnet2")
DIAGNOSTICS = {  # name: (what it tests, --set overrides on the H-Net at its best LR)
    "lrmult-off": ("per-stage LR multipliers off (all 1)", ["optim.lr_multipliers=[1.0, 1.0]"]),
    "ratio-0.01": ("ratio-loss weight 0.01 (0.03 configured)", ["objective.ratio_loss_weight=0.01"]),
    "ratio-0.1": ("ratio-loss weight 0.1", ["objective.ratio_loss_weight=0.1"]),
    "warmup-5x": ("5× the warmup steps", ["schedule.warmup_steps=185"]),
}
EXCERPT = REPO_ROOT / "tests" / "data" / "human_excerpt"
SPLIT = {"train_x_end": 60_000_000, "heldout_x": (60_000_000, 70_000_000), "chr22_length": 51_304_566}
SMOKE_SPLIT = {"train_x_end": 60_100_000, "heldout_x": (60_100_000, 70_000_000), "chr22_length": 51_304_566}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True, help="runs, status.txt and results.json go to OUT/human")
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".data" / "human")
    for flag, name in (("--chr20", "chr20.fa.gz"), ("--chrx", "chrX_1-70Mb.fa.gz"), ("--maf", "chr22_epo_primates.maf.gz"),
                       ("--vcf22", "chr22_1000g.vcf.gz"), ("--snvs", "gpn_clinvar_gnomad_grch37_chr20_chrX.vcf")):
        p.add_argument(flag, type=Path, help=f"default: DATA_DIR/{name}")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--budget-bases", type=float, default=120e6, help="main-run training bases per model")
    p.add_argument("--sweep-fraction", type=float, default=0.25, help="sweep and diagnostic runs' share of the budget")
    # 0.5-4 (8x): on the H200 (2026-12-02) at 1,2,4 three of five models did best at 1 on held-out data.
    p.add_argument("--lr-factors", default="0.5,1,2,4", help="sweep: multiples of each config's optim.lr")
    p.add_argument("--diagnostics", default=",".join(DIAGNOSTICS), help="subset of " + ",".join(DIAGNOSTICS) + " ('' none)")
    p.add_argument("--evals", type=int, default=8, help="held-out evaluations per run")
    p.add_argument("--score-bases", type=float, help="final scoring: at most this many bases per held-out set (spread)")
    p.add_argument("--analysis-bases", type=float, default=2e6, help="chunk analyses: bases per held-out set")
    p.add_argument("--max-variants", type=int, help="1000 Genomes chr22: score at most this many (spread)")
    p.add_argument("--best-lr", help="skip the sweep's choice: MODEL=LR,... (e.g. from an earlier session's table)")
    p.add_argument("--workers", type=int, default=32, help="concurrent training processes (0: in this process)")
    p.add_argument("--phases", default="sweep,main,final,report", help="which phases to run")
    p.add_argument("--smoke", action="store_true", help="tiny models, CPU, the tests/data/human_excerpt data")
    p.add_argument("--report-only", action="store_true", help="rebuild docs from OUT/human/results.json")
    p.add_argument("--merge-from", type=Path, nargs="+", metavar="OUT", help="merge results.json of other --out-dirs")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "ID"), help=argparse.SUPPRESS)  # train/final one, from plan.json
    args = p.parse_args(argv)
    if args.smoke:  # the harness end to end in about a minute: two models, two LRs, one diagnostic
        args.data_dir, args.evals = EXCERPT, min(args.evals, 2)
        args.workers = 0 if args.workers == p.get_default("workers") else args.workers
        args.budget_bases = min(args.budget_bases, 8 * 1024)
        for flag, value in (("models", "hnet,mamba2"), ("lr_factors", "0.5,2"), ("diagnostics", "ratio-0.1")):
            if getattr(args, flag) == p.get_default(flag):
                setattr(args, flag, value)
    for flag, name in (("chr20", "chr20.fa.gz"), ("chrx", "chrX_1-70Mb.fa.gz"), ("maf", "chr22_epo_primates.maf.gz"),
                       ("vcf22", "chr22_1000g.vcf.gz"), ("snvs", "gpn_clinvar_gnomad_grch37_chr20_chrX.vcf")):
        if getattr(args, flag) is None:
            setattr(args, flag, args.data_dir / name)
    args.out, args.model_list = args.out_dir / "human", args.models.split(",")
    unknown = sorted(set(args.model_list) - set(MODELS))
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    return args


# ---- data -----------------------------------------------------------------------------------------


def prepare_data(args, src: h.Sources, split: dict) -> dict:
    """N-free training and held-out FASTAs and the chr22 reference under ``OUT/human/data`` (kept)."""
    d = args.out / "data"
    meta_path = d / "data.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    for path in (src.chr20, src.chrx, src.maf, src.vcf22, src.snvs):
        if not path.exists():
            raise SystemExit(f"{path}: missing (run tools/fetch_grch37.py --device-dir {args.data_dir}, or name it by flag)")
    d.mkdir(parents=True, exist_ok=True)
    min_train = 128 if args.smoke else 1024
    meta = {"train": str(d / "train.fa"), "heldout_x": str(d / "heldout_chrX.fa"), "heldout_22": str(d / "heldout_chr22.fa")}
    with open(d / "train.fa.tmp", "w") as f:
        n20 = h.write_pieces(f, *h.fasta_region(src.chr20, "20", 0, None), min_train)
        nx = h.write_pieces(f, *h.fasta_region(src.chrx, "X", 0, split["train_x_end"]), min_train)
    with open(d / "heldout_chrX.fa.tmp", "w") as f:
        hx = h.write_pieces(f, *h.fasta_region(src.chrx, "X", *split["heldout_x"]), 64)
    blocks = h.maf_blocks(src.maf)
    with open(d / "heldout_chr22.fa.tmp", "w") as f:
        h22 = sum(h.write_pieces(f, "22", b.human, b.start, 64) for b in blocks)
    for key in ("train", "heldout_x", "heldout_22"):
        Path(meta[key] + ".tmp").replace(meta[key])
    ref22 = h.chr22_reference(blocks, split["chr22_length"], d / "chr22_from_alignment.fa")
    classes = h.af_classes(src.vcf22, ref22, d / "chr22_snvs_rare_common.vcf")
    meta |= {"ref22": str(ref22), "vcf22_classes": str(d / "chr22_snvs_rare_common.vcf"),
             "chr22_ref_check": classes["counts"], "rare": sum(classes["labels"].values()),
             "common": len(classes["labels"]) - sum(classes["labels"].values()),
             "bases": {"train_chr20": n20, "train_chrX": nx, "heldout_chrX": hx, "heldout_chr22": h22},
             "maf_blocks": len(blocks), "split": split, "sources": {k: str(v) for k, v in vars(src).items()}}
    q.write_results(meta, meta_path)
    return meta


# ---- the plan ---------------------------------------------------------------------------------------


def run_spec(args, data: dict, run_id: str, model: str, lr: float, bases: float, sets=()) -> dict:
    return {"id": run_id, "model": model, "lr": lr, "tokens": int(bases), "sets": list(sets),
            "extra": [f"data.heldout_paths=[{data['heldout_x']}]", f"optim.lr={lr}", *sets]}


def base_lr(model: str) -> float:
    import yaml

    return float(yaml.safe_load((q.CONFIGS / f"human-{model}.yaml").read_text())["optim"]["lr"])


def sweep_plan(args, data: dict) -> list[dict]:
    bases = args.budget_bases * args.sweep_fraction
    return [run_spec(args, data, f"sweep/{m}_lr{base_lr(m) * float(f):.3g}", m, base_lr(m) * float(f), bases)
            for m in args.model_list for f in args.lr_factors.split(",")]


def best_lrs(args, sweep: list[dict]) -> dict:
    """Each model's sweep LR with the lowest last held-out eval."""
    best = {}
    for spec in sweep:
        bits = final_eval(args.out / spec["id"])
        if bits is not None and (spec["model"] not in best or bits < best[spec["model"]][1]):
            best[spec["model"]] = (spec["lr"], bits)
    return {m: lr for m, (lr, _) in best.items()}


def lr_overrides(text: str) -> dict:
    """``--best-lr hnet=1e-3,mamba2=2e-3`` as a mapping."""
    try:
        return {m: float(v) for m, v in (kv.split("=") for kv in text.split(",") if kv)}
    except ValueError:
        raise SystemExit(f"--best-lr {text}: expected MODEL=LR,MODEL=LR") from None


def load_run(args, spec: dict):
    return q.load_configs("human", [spec["model"]], scale="gpu", tokens=spec["tokens"], evals=args.evals,
                          smoke=args.smoke, device="cpu" if args.smoke else "cuda", extra=spec["extra"])[spec["model"]]


def final_eval(run_dir: Path) -> float | None:
    from hnet_seq.train.metrics import read_metrics

    if not (run_dir / "metrics.jsonl").exists():
        return None
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    return evals[-1]["bits_per_unit"] if evals else None


# ---- running the plan -------------------------------------------------------------------------------


def train_one(args, spec: dict, data: dict) -> None:
    q.train_model(load_run(args, spec), args.out / spec["id"], [data["train"]])


class Plan:
    """The job graph: sweep runs; per model, a main run once its sweep has ended (at the sweep's
    best LR) and its final scoring once the main run has; the diagnostics once the H-Net's sweep
    has.  Specs are written to ``plan_{train,final}.json`` for the child processes."""

    def __init__(self, args, data: dict):
        self.args, self.data, self.specs = args, data, {"train": {}, "final": {}}
        self.sweep = sweep_plan(args, data)
        self.overrides = lr_overrides(args.best_lr or "")

    def best(self) -> dict:
        return best_lrs(self.args, self.sweep) | self.overrides

    def jobs(self, phases: list[str]) -> list[_jobs.Job]:
        jobs = [self._job("train", lambda s=s: s, ()) for s in self.sweep] if "sweep" in phases else []
        # a model whose LR is given by --best-lr does not wait for its sweep (run beside it as a check)
        sweep_of = {m: () if m in self.overrides else tuple(f"train:{s['id']}" for s in self.sweep if s["model"] == m)
                    for m in self.args.model_list}
        if "main" in phases:
            for run in self._main_runs():
                jobs.append(self._job("train", lambda run=run: self._main_spec(*run), sweep_of[run[1]], run[0]))
        if "final" in phases:
            for m in self.args.model_list:
                jobs.append(self._job("final", lambda m=m: self._final_spec(m), (f"train:main/{m}",), f"main/{m}"))
        return jobs

    def _main_runs(self) -> list[tuple[str, str, str | None]]:
        """``(run id, model, diagnostic or None)`` of every main and diagnostic run."""
        runs = [(f"main/{m}", m, None) for m in self.args.model_list]
        if "hnet" in self.args.model_list:
            runs += [(f"diag/{n}", "hnet", n) for n in filter(None, self.args.diagnostics.split(","))]
        return runs

    def main_specs(self) -> list[dict]:
        """The main and diagnostic runs' specs at the best LRs (runs of a model without one left out)."""
        return [spec for spec in (self._main_spec(*run) for run in self._main_runs()) if spec is not None]

    def _main_spec(self, run_id: str, model: str, diagnostic: str | None = None) -> dict | None:
        lr = self.best().get(model)
        if lr is None:
            return None
        bases = self.args.budget_bases * (self.args.sweep_fraction if diagnostic else 1)
        return run_spec(self.args, self.data, run_id, model, lr, bases, DIAGNOSTICS[diagnostic][1] if diagnostic else ())

    def _final_spec(self, model: str) -> dict | None:
        spec = self._main_spec(f"main/{model}", model)
        return spec if spec and done(self.args, "train", spec) else None

    def _job(self, kind: str, make, after: tuple, run_id: str | None = None) -> _jobs.Job:
        args, holder = self.args, {}
        run_id = run_id or make()["id"]

        def prepare() -> bool:
            holder["spec"] = make()
            if holder["spec"] is None:
                return False
            self.specs[kind][run_id] = holder["spec"]
            q.write_results({"specs": self.specs[kind], "args": plan_args(args)}, args.out / f"plan_{kind}.json")
            return True

        def finished() -> bool:
            return holder.get("spec") is not None and done(args, kind, holder["spec"])

        return _jobs.Job(
            id=f"{kind}:{run_id}", after=after, prepare=prepare, finished=finished,
            argv=[sys.executable, __file__, "--out-dir", str(args.out_dir), *plan_argv(args), "--worker", kind, run_id],
            run_here=lambda: (train_one if kind == "train" else final_one)(args, holder["spec"], self.data),
            log=args.out / "logs" / (run_id.replace("/", "_") + f".{kind}.log"))

    def run(self, phases: list[str], session: dict) -> None:
        def tick():
            write_status(self.args, "pipeline", list(self.specs["train"].values()))
            record_session(self.args, session)

        _jobs.run_jobs(self.jobs(phases), self.args.workers, cwd=REPO_ROOT, tick=tick)


def plan_args(args) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("worker", "out", "model_list")}


def plan_argv(args) -> list[str]:
    """The flags a child needs to rebuild the same plan (everything but the mode flags)."""
    out = []
    for key, value in plan_args(args).items():
        if key in ("out_dir", "report_only", "merge_from", "phases", "scale", "device") or value in (None, False):
            continue
        out += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return out


def done(args, kind: str, spec: dict) -> bool:
    if kind == "final":
        return (args.out / "final" / f"{spec['model']}.json").exists()
    cfg_steps = max(1, spec["tokens"] // (1024 if args.smoke else 65536))
    from hnet_seq.train.metrics import read_metrics

    run_dir = args.out / spec["id"]
    if not (run_dir / "metrics.jsonl").exists():
        return False
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    return bool(evals) and evals[-1]["step"] >= cfg_steps


def write_status(args, phase: str, specs: list[dict]) -> None:
    """``OUT/human/status.txt``: per run its step, bases/s and ETA, read from ``metrics.jsonl``."""
    from hnet_seq.train.metrics import read_metrics

    lines, etas = [f"{time.strftime('%H:%M:%S')} phase {phase}: {len(specs)} runs"], []
    for s in specs:
        rows = [r for r in read_metrics(args.out / s["id"]) if r["kind"] == "train"] \
            if (args.out / s["id"] / "metrics.jsonl").exists() else []
        if not rows:
            lines.append(f"  {s['id']}: waiting")
            continue
        seen, rate = rows[-1]["units_seen"], rows[-1]["tokens_per_s"]
        eta = max(0.0, (s["tokens"] - seen) / max(rate, 1.0))
        etas.append(eta)
        heldout = final_eval(args.out / s["id"])  # the training loss alone misled once (docs/results.md)
        lines.append(f"  {s['id']}: {seen / 1e6:.1f}/{s['tokens'] / 1e6:.1f} M bases, {rate / 1e3:.0f} k/s, "
                     f"train bits {rows[-1]['bits_per_unit']:.3f}, last held-out {heldout or float('nan'):.3f}, "
                     f"ETA {eta:.0f} s")
    lines.insert(1, f"  phase ETA (slowest run): {max(etas, default=0):.0f} s")
    tmp = args.out / "status.txt.tmp"
    args.out.mkdir(parents=True, exist_ok=True)
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(args.out / "status.txt")


def record_session(args, session: dict) -> None:
    """``OUT/human/sessions.json``: each launch that trains or scores, with its device, command,
    start and last heartbeat (every tick).  A GPU machine can be lost mid-run; a report rebuilt
    from the folders copied back then still names the machine that ran them and for how long."""
    path = args.out / "sessions.json"
    sessions = json.loads(path.read_text()) if path.exists() else {}
    sessions[session["started"]] = session | {"last_seen": time.strftime("%Y-%m-%d %H:%M:%S")}
    q.write_results(sessions, path)


def worker(args) -> None:
    kind, run_id = args.worker
    spec = json.loads((args.out / f"plan_{kind}.json").read_text())["specs"][run_id]
    data = json.loads((args.out / "data" / "data.json").read_text())
    (train_one if kind == "train" else final_one)(args, spec, data)


# ---- final scoring and analyses ------------------------------------------------------------------


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
        out[key] = {"bits": s.bits_per_unit, "bases": int(sum(x.units_scored for x in s.scores))}
    if spec["model"] in HNETS:
        out["chunks"] = chunk_analysis(im, data, args, window)
    out["variants"] = variant_aurocs(im, data, args, window)
    q.write_results(out, args.out / "final" / f"{spec['model']}.json")


def chunk_analysis(im, data: dict, args, window: int) -> dict:
    """First-stage chunk starts against sequence features (held-out chrX) and human/chimp
    differences (held-out chr22 alignment rows): ``[starts, positions]`` per class and profiles."""
    import numpy as np
    from quality_dna import tandem_repeats

    from hnet_seq.inference import boundary_tracks

    counts: dict[str, list[int]] = {}
    prof = {"CpG (C of CG)": np.zeros((2, 21), np.int64), "diverged base": np.zeros((2, 21), np.int64)}

    def add(key, pair):
        counts[key] = [a + b for a, b in zip(counts.get(key, [0, 0]), pair)]

    recs = spread_records(im.adapter, data["heldout_x"], args.analysis_bases)
    for track, rec in zip(boundary_tracks(im, recs, window=window), recs):
        bnd, valid = q.boundary_mask(track, len(rec.data)), np.arange(len(rec.data)) > 0
        cpg, rep, low = h.cpg_features(rec.data), tandem_repeats(rec.data), h.low_complexity(rec.data)
        for key, where in (("all (chrX)", valid), ("CpG dinucleotide", cpg["cpg"]), ("not CpG", ~cpg["cpg"]),
                           ("CpG-rich window (island rule)", cpg["island"]), ("outside CpG-rich windows", ~cpg["island"]),
                           ("tandem repeat (period 1-24)", rep), ("outside tandem repeats", ~rep),
                           ("low complexity (sdust T=20)", low), ("not low complexity", ~low)):
            add(key, q.tally(bnd, valid & where))
        c_sites = np.flatnonzero(cpg["cpg"][:-1] & (rec.data[:-1] == 1))
        prof["CpG (C of CG)"] += h.profile(bnd, c_sites, -10, 11)
    blocks = {b.start: b for b in h.maf_blocks(Path(json.loads((args.out / "data" / "data.json").read_text())["sources"]["maf"]))}
    recs = spread_records(im.adapter, data["heldout_22"], args.analysis_bases)
    for track, rec in zip(boundary_tracks(im, recs, window=window), recs):
        start = rec.meta["start"]
        block = blocks.get(max((s for s in blocks if s <= start), default=-1))
        if block is None:
            continue
        a = start - block.start
        div, gap = block.diverged[a:a + len(rec.data)], block.chimp_gap[a:a + len(rec.data)]
        bnd, valid = q.boundary_mask(track, len(rec.data)), np.arange(len(rec.data)) > 0
        for key, where in (("all (chr22)", valid), ("human/chimp diverged base", div),
                           ("identical in chimp", ~div & ~gap), ("chimp gap", gap)):
            add(key, q.tally(bnd, valid & where))
        prof["diverged base"] += h.profile(bnd, np.flatnonzero(div), -10, 11)
    return {"counts": counts, "profiles": {k: v.tolist() for k, v in prof.items()}, "offsets": [-10, 11]}


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


# ---- the driver ----------------------------------------------------------------------------------


def drive(args) -> dict:
    t0 = time.perf_counter()
    src = h.Sources(args.chr20, args.chrx, args.maf, args.vcf22, args.snvs)
    data = prepare_data(args, src, SPLIT)
    plan, phases = Plan(args, data), args.phases.split(",")
    if set(phases) & {"sweep", "main", "final"}:
        session = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": q.device_text(args.device),
                   "command": command_line()}
        plan.run(phases, session)
    sweep, best = plan.sweep, plan.best()
    main = plan.main_specs()
    results = q.start_results(args.out / "results.json", "human", args)
    collect(results, args, sweep, main, best, data)
    q.save_results(results, args.out / "results.json", t0)
    write_status(args, "done", main)
    return results


def collect(results: dict, args, sweep: list[dict], main: list[dict], best: dict, data: dict) -> None:
    """Fill ``results`` from the run folders and ``OUT/human/final/*.json`` (runs missing are left out)."""
    cfgs = q.load_configs("human", args.model_list, scale="gpu", tokens=None, evals=args.evals, smoke=args.smoke,
                          device="cpu", extra=[f"data.heldout_paths=[{data['heldout_x']}]"])
    match = q.flop_match(cfgs, hnet=next((m for m in args.model_list if m in HNETS), args.model_list[0]))
    results |= {"data": {k: data[k] for k in ("bases", "chr22_ref_check", "rare", "common", "maf_blocks", "split")},
                "best_lr": best, "budget_bases": args.budget_bases, "sweep_fraction": args.sweep_fraction,
                "targets": {m: list(cfgs[m].target_compression()) for m in args.model_list}}
    for m in args.model_list:
        path = args.out / "final" / f"{m}.json"
        if path.exists():
            results["models"][m] = {**match[m], **json.loads(path.read_text())}
        else:  # from an earlier call in this --out-dir whose scoring is gone: not a result now
            results["models"].pop(m, None)
    results["sweep"] = {s["id"]: {"model": s["model"], "lr": s["lr"], "bits": final_eval(args.out / s["id"]),
                                  "bases": s["tokens"]} for s in sweep if final_eval(args.out / s["id"]) is not None}
    diag = {}
    for s in main:
        if s["id"].startswith("diag/") and final_eval(args.out / s["id"]) is not None:
            summary = q.run_summary(args.out / s["id"])
            name = s["id"].split("/", 1)[1]
            diag[name] = {"what": DIAGNOSTICS[name][0], "bits": summary["curve"][-1]["bits_per_unit"],
                          "compression": summary["curve"][-1]["compression"], "lr": s["lr"], "bases": s["tokens"]}
    results["diagnostics"] = diag
    results["unfinished"] = {s["model"]: {**match[s["model"]], **q.run_summary(args.out / s["id"]), "lr": s["lr"],
                                          "planned_bases": s["tokens"]}
                             for s in main if s["id"].startswith("main/") and s["model"] not in results["models"]
                             and final_eval(args.out / s["id"]) is not None}
    sessions_path = args.out / "sessions.json"
    if sessions_path.exists():  # the machines that trained, not the one rebuilding the report
        results["sessions"] = json.loads(sessions_path.read_text())
        results["device"] = "; ".join(dict.fromkeys(s["device"] for s in results["sessions"].values()))


def main() -> None:
    args = parse_args()
    args.scale, args.device = "gpu", "cpu" if args.smoke else "cuda"
    if args.worker:
        return worker(args)
    from _human_report import report

    if args.merge_from:
        results = q.merge_results([q.load_results(d / "human" / "results.json") for d in args.merge_from])
        results["commands"].append(command_line())
        q.write_results(results, args.out / "results.json")
    elif args.report_only:
        results = q.load_results(args.out / "results.json")
    else:
        results = drive(args)
    if "report" in args.phases.split(",") or args.report_only or args.merge_from:
        report(results, args.out)


if __name__ == "__main__":
    main()
