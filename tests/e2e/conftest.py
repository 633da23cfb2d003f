"""Fixtures of the inference tests (embed, score, generate, chunks, their errors, the runner): tiny
random checkpoints and real plasmid sequence (shipped in hnet_seq/resources). A conftest rather
than helpers.py: ``helpers.small_fasta`` is already a function (it writes a FASTA), and these need
no import."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import GENOME, make_checkpoint


@pytest.fixture(scope="module")
def ck2(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna2", "tiny_2stage.json")


@pytest.fixture(scope="module")
def ck1(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna1", "tiny_1stage.json")


@pytest.fixture(scope="module")
def plasmids() -> dict[str, str]:
    import pysam

    with pysam.FastxFile(str(GENOME)) as f:
        return {r.name: r.sequence for r in f}


@pytest.fixture(scope="module")
def small_fasta(tmp_path_factory, plasmids) -> tuple[Path, dict[str, int]]:
    """Plasmid B whole (5,153 bp) and 1.5 kb of plasmids A and E: real sequence, quick on CPU."""
    names = list(plasmids)
    seqs = {names[1]: plasmids[names[1]], names[0]: plasmids[names[0]][20000:21500],
            names[2]: plasmids[names[2]][:1500].lower()}
    path = tmp_path_factory.mktemp("fa") / "plasmids_subset.fa"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
    return path, {n: len(s) for n, s in seqs.items()}
