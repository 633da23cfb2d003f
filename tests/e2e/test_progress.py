"""Progress of long jobs: totals from the .fai / VCF record count, plain lines when stderr is no terminal,
and a training bar that fits 80 columns."""
from __future__ import annotations

import io
import re

import pysam
import pytest
from typer.testing import CliRunner

from hnet_seq.cli.main import app
from helpers import GENOME, make_checkpoint
from helpers import genome, write_vcf  # noqa: F401  (fixture)

EVERY_UPDATE = {"HNET_SEQ_PROGRESS_SECONDS": "0"}


def _lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{command}: ")]


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna", "tiny_1stage.json")


def test_score_plain_lines_count_towards_the_fai_total(ck, tmp_path):
    with pysam.FastxFile(str(GENOME)) as f:
        seqs = [r.sequence[:n] for r, n in zip(f, (2600, 900))]
    fasta = tmp_path / "two.fa"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    args = ["score", str(fasta), "--checkpoint", str(ck), "--window", "1000", "--batch-tokens", "1100"]
    unsized = CliRunner().invoke(app, args, env=EVERY_UPDATE)
    assert unsized.exit_code == 0, unsized.output
    assert _lines(unsized.stderr, "score") and all("%" not in x for x in _lines(unsized.stderr, "score"))

    pysam.faidx(str(fasta))  # now the total is known up front
    result = CliRunner().invoke(app, args, env=EVERY_UPDATE)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stderr, "score")
    assert len(lines) > 1  # several batches, one line each
    done = [int(re.match(r"score: ([\d,]+)/", x).group(1).replace(",", "")) for x in lines]
    assert done == sorted(done) and all(f"/{3500:,} bases" in x and "ETA" in x for x in lines)
    assert lines[-1].startswith(f"score: {3500:,}/{3500:,} bases (100.0%)")
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log file


def test_score_variants_total_is_the_vcf_record_count(ck, genome, tmp_path):  # noqa: F811
    ref, chroms = genome
    vcf = tmp_path / "calls.vcf"
    n = len(write_vcf(vcf, chroms))
    result = CliRunner().invoke(app, ["score-variants", "--vcf", str(vcf), "--reference", str(ref),
                                      "--checkpoint", str(ck), "--window", "400", "-o", str(tmp_path / "s.tsv")],
                                env=EVERY_UPDATE)
    assert result.exit_code == 0, result.output
    assert _lines(result.stderr, "score-variants")[-1].startswith(f"score-variants: {n}/{n} records (100.0%)")


def test_bad_progress_interval_is_a_one_line_error(ck, tmp_path):
    fasta = tmp_path / "one.fa"
    fasta.write_text(">r\nACGTACGTTGCA\n")
    result = CliRunner().invoke(app, ["score", str(fasta), "--checkpoint", str(ck)],
                                env={"HNET_SEQ_PROGRESS_SECONDS": "soon"})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: HNET_SEQ_PROGRESS_SECONDS=soon: expected a number of seconds >= 0 (default 30)"]


def test_training_bar_fits_80_columns_with_step_total_and_eta():
    from rich.console import Console as RichConsole

    from hnet_seq.train.metrics import Console

    console = Console(1_000_000, 0, "base", mode="on")
    console.progress.stop()  # rendered below on an 80-column terminal instead
    console.step(120_000, {"loss": 1.2345, "bits_per_unit": 1.91012, "tokens_per_s": 1.2e6, "compression": [3.1]})
    terminal = RichConsole(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    with terminal.capture() as screen:
        terminal.print(console.progress.get_renderable())
    lines = screen.get().rstrip("\n").splitlines()
    assert len(lines) == 1 and len(lines[0].rstrip()) <= 80, lines
    assert "step 120000/1000000" in lines[0] and "ETA" in lines[0] and "1.910 bits/base" in lines[0]


def test_training_without_terminal_prints_timed_lines_with_eta(monkeypatch, capsys):
    from hnet_seq.train.metrics import Console

    monkeypatch.setenv("HNET_SEQ_PROGRESS_SECONDS", "0")
    console = Console(10, 2, "base", mode="off")  # resumed at step 2
    for step in (3, 4):
        console.step(step, {"loss": 1.0, "bits_per_unit": 1.5, "tokens_per_s": 100.0})
    lines = capsys.readouterr().err.splitlines()
    assert [x.split(",")[0] for x in lines] == ["step 3/10 (30.0%)", "step 4/10 (40.0%)"]
    assert all("ETA" in x and "1.500 bits/base" in x for x in lines)
    monkeypatch.setenv("HNET_SEQ_PROGRESS_SECONDS", "3600")
    quiet = Console(10, 0, "base", mode="off")
    quiet.step(1, {"loss": 1.0, "bits_per_unit": 1.5})
    assert capsys.readouterr().err == ""  # the next line is an hour away


def test_input_totals_from_fai_bed_and_region(tmp_path):
    import gzip

    from hnet_seq.inference.records import input_total

    fasta = tmp_path / "ref.fa"
    fasta.write_text(">r0\n" + "ACGT" * 300 + "\n>r1\n" + "GATTACA" * 100 + "\n")
    assert input_total([fasta]) is None  # no .fai yet: no total rather than a scan
    pysam.faidx(str(fasta))
    assert input_total([fasta]) == 1200 + 700
    bed = tmp_path / "iv.bed.gz"
    with gzip.open(bed, "wt") as f:
        f.write("track name=x\nr0\t100\t250\tone\t0\t-\nr1\t0\t700\n")
    assert input_total(bed=bed) == 150 + 700
    assert input_total(region="r0:101-200", reference=fasta) == 100  # 1-based inclusive
    assert input_total(region="r1", reference=fasta) == 700
