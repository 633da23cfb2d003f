"""A sample of the hts-specs VCF conformance corpus through score-variants.

Every file gives a table in which every record is accounted for, or one clean error: exit 2, one
line, no traceback, nothing left behind.  The whole corpus is bench/vcf_conformance.py's job.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "vcf_conformance"
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="conformance sample missing")


def test_sample_gives_a_table_or_one_clean_error(report):
    from vcf_conformance import run_corpus

    files = sorted(SAMPLE.glob("*/*/*.vcf"))
    assert len(files) >= 8
    results = run_corpus(files)
    outcomes = {f.relative_to(SAMPLE).as_posix(): r["outcome"] for f, r in results.items()}
    assert set(outcomes.values()) <= {"scored", "refused"}, outcomes
    assert "scored" in outcomes.values() and "refused" in outcomes.values()  # the sample exercises both
    for f, r in results.items():
        if r["outcome"] == "refused":
            assert r["error"].startswith("error:") and "\n" not in r["error"] and not r["left"], (f, r)
        else:
            assert r["accounted"] and r["alleles"] == r["scored"] + sum(r["skipped"].values()), (f, r)
            assert r["written"] == r["records"] or r["unwritable"], (f, r)
    report("sample files scored / refused", f"{sum(v == 'scored' for v in outcomes.values())} / "
                                            f"{sum(v == 'refused' for v in outcomes.values())}")
