"""Human DNA: does the H-Net beat FLOP-matched isotropic models on GRCh37, each model at its own tuned LR?

    python tools/fetch_grch37.py --device-dir .data/human                  # the data (49.9 MiB), once
    setsid nohup python bench/quality_human.py --out-dir /tmp/qh > /tmp/qh.log 2>&1 &   # one H200
    cat /tmp/qh/human/status.txt                                           # progress and ETA
    OUT=$OUT bash bench/qh_poll.sh /tmp/qh 540                             # wait, report, bring back $OUT/qh.tgz
    python bench/quality_human.py --report-only --out-dir runs/qh          # docs from a copied-back results.json
    python bench/quality_human.py --report-only --phases chunks --out-dir D  # and recount D's chunk tables first
    python bench/quality_human.py --out-dir runs/qh --phases chunks,report # chunk tables again, from the saved tracks
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
   scored on a chr22 reference built from the alignment's human rows); each H-Net's boundary
   tracks and the records' bases go to ``final/<model>-boundaries.npz`` (about 1.7 MB at the
   default ``--analysis-bases``, in ``qh_poll.sh``'s tar): ``--phases chunks`` recounts the chunk
   tables from them on any machine, without the model, e.g. after a change to a sequence class;
4. report: ``results.json``, figures and the ``human`` section of ``docs/results.md`` (smoke:
   ``OUT/docs``).  A finished run or final score is kept on restart.

Steps 1-3 are one job graph (``_jobs``; the plan in ``_human_plan``, the scoring in
``_human_final``), not three waits: a model's main run starts when its own sweep has ended, its
final scoring when its main run has, and the diagnostics when the H-Net's sweep has, so the
isotropic models' main runs fill the GPU while the slower H-Nets still sweep.

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
import _quality as q  # noqa: E402
from _human_final import counts_from_tracks, final_one, recount_chunks  # noqa: E402
from _human_plan import DIAGNOSTICS, HNETS, Plan, final_eval, load_run, write_status  # noqa: E402
from _report import REPO_ROOT, command_line  # noqa: E402

MODELS = ["hnet", "hnet-m", "hnet2", "mamba2", "transformer"]
EXCERPT = REPO_ROOT / "tests" / "data" / "human_excerpt"
SPLIT = {"train_x_end": 60_000_000, "heldout_x": (60_000_000, 70_000_000), "chr22_length": 51_304_566}


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
    p.add_argument("--phases", default="sweep,main,final,report",
                   help="which of sweep,main,final,chunks,report to run (chunks: recount final/<model>.json's "
                        "chunk tables from final/<model>-boundaries.npz, no model or GPU, or with --report-only "
                        "those of results.json; report: docs)")
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


# ---- running the plan ------------------------------------------------------------------------


def train_one(args, spec: dict, data: dict) -> None:
    q.train_model(load_run(args, spec), args.out / spec["id"], [data["train"]])


RUNNERS = {"train": train_one, "final": final_one}


def make_plan(args, data: dict) -> Plan:
    """The job graph, its jobs run by this script (``--worker``) or in this process."""
    return Plan(args, data, Path(__file__).resolve(), RUNNERS)


def worker(args) -> None:
    kind, run_id = args.worker
    spec = json.loads((args.out / f"plan_{kind}.json").read_text())["specs"][run_id]
    data = json.loads((args.out / "data" / "data.json").read_text())
    RUNNERS[kind](args, spec, data)


# ---- the driver ----------------------------------------------------------------------------------


def drive(args) -> dict:
    t0 = time.perf_counter()
    src = h.Sources(args.chr20, args.chrx, args.maf, args.vcf22, args.snvs)
    data = prepare_data(args, src, SPLIT)
    plan, phases = make_plan(args, data), args.phases.split(",")
    if set(phases) & {"sweep", "main", "final"}:
        session = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": q.device_text(args.device),
                   "command": command_line()}
        plan.run(phases, session)
    if "chunks" in phases:  # from the saved boundary tracks: no model, no GPU
        done = recount_chunks(args.out / "final", [m for m in args.model_list if m in HNETS])
        print(f"chunks: recounted {', '.join(done) or 'none'} from {args.out / 'final'}/<model>-boundaries.npz")
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
    results["sweep"] = {s["id"]: {"model": s["model"], "lr": s["lr"], "bits": bits, "bases": s["tokens"]}
                        for s in sweep if (bits := final_eval(args.out / s["id"])) is not None}
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
        if "chunks" in args.phases.split(","):  # from the tracks beside a copied-back results.json
            for name, model in results["models"].items():
                saved = args.out / "final" / f"{name}-boundaries.npz"
                if saved.exists():
                    model["chunks"] = counts_from_tracks(saved)
            q.write_results(results, args.out / "results.json")
    else:
        results = drive(args)
    if "report" in args.phases.split(",") or args.report_only or args.merge_from:
        report(results, args.out)


if __name__ == "__main__":
    main()
