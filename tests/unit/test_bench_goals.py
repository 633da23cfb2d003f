"""The benches' goal tables: each issue goal against the best measured variant, with its gap."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def _row(model, variant, mfu, tflops, **extra):
    return {"model": model, "batch": 8, "variant": variant, "oom": False, "mfu": mfu, "tflops": tflops, **extra}


def test_training_goals_show_the_best_variant_and_the_gap():
    from train_throughput import goals_table

    matched = {"hnet": "hnet-2stage-L"}
    rows = [_row("hnet-2stage-L", "base", 0.200, 200.0), _row("hnet-2stage-L", "fused", 0.231, 231.0),
            _row("transformer (matched to hnet-2stage-L)", "base", 0.25, 250.0, **matched),
            _row("transformer (matched to hnet-2stage-L)", "fused", 0.27, 270.0, **matched),
            _row("transformer (matched to hnet-2stage-L)", "fused+dense", 0.30, 300.0, **matched),  # no H-Net row
            _row("dna-hnet", "base", 0.30, 1.0), {**_row("dna-hnet", "fused", 0.9, 9.0), "oom": True}]
    table = {line.split(" | ")[0].lstrip("| "): line for line in goals_table(rows, 8192) if line.startswith("| ")
             and not line.startswith("| goal")}
    assert "23.1% (fused)" in table["hnet-2stage-L MFU"] and "short by 16.9 points" in table["hnet-2stage-L MFU"]
    # each at its fastest: the Transformer's variant that the H-Net has no row of counts
    assert "0.77× (fused ÷ fused+dense)" in table["hnet-2stage-L FLOP throughput ÷ matched Transformer's"]
    assert "short by 0.18×" in table["hnet-2stage-L FLOP throughput ÷ matched Transformer's"]
    assert "short by 15.0 points" in table["matched Transformer of hnet-2stage-L: MFU"]
    assert table["dna-hnet MFU"].endswith("| 30.0% (base) | met |")  # the OOM row is not a measurement


def test_training_goals_not_run_are_left_out():
    from train_throughput import goals_table

    assert goals_table([_row("hnet-1stage-L", "base", 0.1, 1.0)], 8192) == []


def _shared(kind, rc, share, rate):
    return {"kind": kind, "rc": rc, "share_prefix": share, "variants": 10, "seconds": 1.0, "variants_per_s": rate}


def test_a_shared_only_run_replaces_only_its_paragraphs_and_shows_the_gap(tmp_path, monkeypatch):
    import _inference_report as ir

    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- inference:begin -->\n### Inference throughput (H100)\n\nold tables\n\n"
                    f"{ir.SHARED_MARK}\n\nold shared rows\n\n{ir.RSS_MARK}\n\nold rss\n<!-- inference:end -->\n")
    monkeypatch.setattr(ir, "BENCHMARKS_MD", docs)
    results = {"embed": [], "variants": [], "rss": [],
               "model": {"device": "NVIDIA H200", "precision": "bfloat16", "params": 99.5e6, "window": 8192,
                         "command": "python bench/inference.py --shared-only"},
               "shared": [_shared("SNVs, 1 ALT per site", True, False, 60.0), _shared("SNVs, 1 ALT per site", True, True, 250.0),
                          _shared("saturation mutagenesis, 1,000 bp", False, True, 400.0)]}
    ir.write_docs(results)
    text = docs.read_text()
    assert "old tables" in text and "old rss" in text and "old shared rows" not in text
    assert text.index("old tables") < text.index(ir.SHARED_MARK) < text.index(ir.RSS_MARK)
    assert "| SNVs with --rc-average | ≥ 200 variants/s | 250.0 (shared prefix) | met |" in text
    assert "| saturation mutagenesis | ≥ 1,000 variants/s | 400.0 (shared prefix) | 0.40× the goal |" in text
    assert "NVIDIA H200" in text.split(ir.SHARED_MARK)[1]


def test_training_sweep_split_over_calls_lands_as_one_table(tmp_path, monkeypatch):
    """``--json``: a second command on the same device keeps the first one's rows (a re-measured
    row replaces its old self), and ``--from-json`` writes the section from the file alone."""
    import argparse

    from train_throughput import add_rows, new_record, render

    path = tmp_path / "sweep.json"

    def command(argv, rows):
        monkeypatch.setattr(sys, "argv", ["bench/train_throughput.py", *argv])
        args = argparse.Namespace(device="cpu", warmup=1, steps=2, unit=8192, variants="base,fused", json=path)
        record = new_record(args)
        add_rows(record, rows, path)
        return record

    row = lambda model, variant, tflops: {**_row(model, variant, tflops / 1000, tflops), "layout": "[T9]",  # noqa: E731
                                          "params": 1e8, "compression": [], "tokens_per_s": 1.0, "gpu_idle": 0.0,
                                          "peak_gib": 1.0}
    command(["--models", "hnet-2stage-L"], [row("hnet-2stage-L", "base", 100.0), row("hnet-2stage-L", "fused", 110.0)])
    record = command(["--models", "dna-hnet"], [row("dna-hnet", "base", 50.0), row("hnet-2stage-L", "fused", 120.0)])
    assert [(r["model"], r["variant"], r["tflops"]) for r in record["rows"]] == [
        ("hnet-2stage-L", "base", 100.0), ("dna-hnet", "base", 50.0), ("hnet-2stage-L", "fused", 120.0)]
    text = render(json.loads(path.read_text()))
    assert "`python bench/train_throughput.py --models hnet-2stage-L`; then `python bench/train_throughput.py --models dna-hnet`" in text
    assert "| 120.0 | 12.0% |" in text and "| 1.20 |" in text  # fused over base of the same model and batch
    monkeypatch.setattr(sys, "argv", ["x", "--from-json", str(path), "--out", str(tmp_path / "b.md")])
    from train_throughput import main

    main()
    assert "<!-- train_throughput:begin -->" in (tmp_path / "b.md").read_text()
