"""The human bench's plan (``bench/quality_human.py``): run specs, the sweep's best LRs, the job
graph of sweep → main (and diagnostics) → final scoring, and what a launch leaves for the next one
(``status.txt``, ``sessions.json``, ``plan_{train,final}.json``)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _jobs
import _quality as q
from _report import REPO_ROOT

HNETS = ("hnet", "hnet-m", "hnet2")
DIAGNOSTICS = {  # name: (what it tests, --set overrides on the H-Net at its best LR)
    "lrmult-off": ("per-stage LR multipliers off (all 1)", ["optim.lr_multipliers=[1.0, 1.0]"]),
    "ratio-0.01": ("ratio-loss weight 0.01 (0.03 configured)", ["objective.ratio_loss_weight=0.01"]),
    "ratio-0.1": ("ratio-loss weight 0.1", ["objective.ratio_loss_weight=0.1"]),
    "warmup-5x": ("5× the warmup steps", ["schedule.warmup_steps=185"]),
}



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


def run_rows(run_dir: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` rows ([] before it has written any)."""
    from hnet_seq.train.metrics import read_metrics

    return read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []


def last_eval(rows: list[dict]) -> dict | None:
    return next((r for r in reversed(rows) if r["kind"] == "eval"), None)


def final_eval(run_dir: Path) -> float | None:
    """A run's last held-out bits per unit (None before its first eval)."""
    row = last_eval(run_rows(run_dir))
    return row["bits_per_unit"] if row else None


# ---- running the plan -------------------------------------------------------------------------------


class Plan:
    """The job graph: sweep runs; per model, a main run once its sweep has ended (at the sweep's
    best LR) and its final scoring once the main run has; the diagnostics once the H-Net's sweep
    has.  Specs are written to ``plan_{train,final}.json`` for the child processes."""

    def __init__(self, args, data: dict, script: Path, runners: dict):
        """``script --worker KIND ID`` runs one job in a child; ``runners[KIND](args, spec, data)`` here."""
        self.args, self.data, self.specs = args, data, {"train": {}, "final": {}}
        self.script, self.runners = script, runners
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
            argv=[sys.executable, str(self.script), "--out-dir", str(args.out_dir), *plan_argv(args), "--worker", kind,
                  run_id],
            run_here=lambda: self.runners[kind](args, holder["spec"], self.data),
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
    row = last_eval(run_rows(args.out / spec["id"]))
    return row is not None and row["step"] >= cfg_steps


def write_status(args, phase: str, specs: list[dict]) -> None:
    """``OUT/human/status.txt``: per run its step, bases/s and ETA, read from ``metrics.jsonl``."""
    lines, etas = [f"{time.strftime('%H:%M:%S')} phase {phase}: {len(specs)} runs"], []
    for s in specs:
        all_rows = run_rows(args.out / s["id"])
        rows = [r for r in all_rows if r["kind"] == "train"]
        if not rows:
            lines.append(f"  {s['id']}: waiting")
            continue
        seen, rate = rows[-1]["units_seen"], rows[-1]["tokens_per_s"]
        eta = max(0.0, (s["tokens"] - seen) / max(rate, 1.0))
        etas.append(eta)
        heldout = last_eval(all_rows)  # the training loss alone misled once (docs/results.md)
        lines.append(f"  {s['id']}: {seen / 1e6:.1f}/{s['tokens'] / 1e6:.1f} M bases, {rate / 1e3:.0f} k/s, "
                     f"train bits {rows[-1]['bits_per_unit']:.3f}, "
                     f"last held-out {heldout['bits_per_unit'] if heldout else float('nan'):.3f}, "
                     f"ETA {eta:.0f} s")
    lines.insert(1, f"  phase ETA (slowest run): {max(etas, default=0):.0f} s")
    from hnet_seq.runtime.atomic import atomic_write_text

    atomic_write_text(args.out / "status.txt", "\n".join(lines) + "\n")


def record_session(args, session: dict) -> None:
    """``OUT/human/sessions.json``: each launch that trains or scores, with its device, command,
    start and last heartbeat (every tick).  A GPU machine can be lost mid-run; a report rebuilt
    from the folders copied back then still names the machine that ran them and for how long."""
    path = args.out / "sessions.json"
    sessions = json.loads(path.read_text()) if path.exists() else {}
    sessions[session["started"]] = session | {"last_seen": time.strftime("%Y-%m-%d %H:%M:%S")}
    q.write_results(sessions, path)
