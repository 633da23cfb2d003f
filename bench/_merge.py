"""Joining the ``results.json`` of separate launches of a quality bench (``--merge-from``)."""
from __future__ import annotations

RERUN_SECTIONS = ("models", "diagnostics")  # whole runs: a rerun replaces them, it does not blend into them


def merge_results(parts: list[dict]) -> dict:
    """One ``results.json`` from the parts of separate launches, in the order given: nested dicts
    merge (models, per-language rows), commands are concatenated, the wall time is the longest
    run's and the start the earliest.

    A run that several parts hold (the same model or diagnostic run again) is taken whole from the
    last of them: blending two runs' leaves would pair one run's losses with another's chunk counts.
    The runs it replaces are kept, oldest first, under ``repeats[section][name]``: the run-to-run
    noise."""
    def merge(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
        return a

    merged = parts[0]
    for part in parts[1:]:
        if (part["experiment"], part["scale"], part["smoke"]) != (merged["experiment"], merged["scale"], merged["smoke"]):
            raise SystemExit("--merge-from: the runs are of different experiments or scales")
        joined = merge(merged, part)
        for section in RERUN_SECTIONS:
            if section in joined:
                joined[section] = {**merged.get(section, {}), **part.get(section, {})}
        joined |= {"commands": merged["commands"] + part["commands"],
                   "wall_s": max(merged["wall_s"], part["wall_s"]),
                   "started": min(merged["started"], part["started"])}
        repeats = replaced_runs(merged, part)
        merged = {k: v for k, v in joined.items() if k != "repeats"} | ({"repeats": repeats} if repeats else {})
    return merged


def replaced_runs(earlier: dict, later: dict) -> dict:
    """``repeats`` after merging ``later`` into ``earlier``: both parts' own, then the runs of
    ``earlier`` that ``later`` holds again (and so replaces)."""
    repeats = {}
    for section in RERUN_SECTIONS:
        runs: dict[str, list] = {}
        for part in (earlier, later):
            for name, old in part.get("repeats", {}).get(section, {}).items():
                runs.setdefault(name, []).extend(old)
        for name in earlier.get(section, {}).keys() & later.get(section, {}).keys():
            runs.setdefault(name, []).append(earlier[section][name])
        if runs:
            repeats[section] = runs
    return repeats
