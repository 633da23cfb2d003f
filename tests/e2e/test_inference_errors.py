"""Errors of the inference commands: bad input is one line with exit status 2 and leaves no output;
the library names its parameter where the CLI names the flag."""
from __future__ import annotations

import pytest

from hnet_seq.errors import UserError
from helpers import invoke, make_checkpoint


def test_bad_input_is_one_line_and_leaves_no_output(ck1, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\n" + "ACGT" * 100 + "\n>broken\nACGTXACGT\n")
    out = tmp_path / "e.parquet"
    r = invoke("embed", bad, "--checkpoint", ck1, "-o", out, "--chunks", "--quiet")
    assert r.exit_code == 2
    assert "record 'broken'" in r.output and "'X'" in r.output and len(r.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temporary file left behind
    for args, words in (
            (["embed", bad, "--checkpoint", ck1, "-o", out, "--pool", "max"], "--pool max"),
            (["embed", "--bed", bad, "--checkpoint", ck1, "-o", out], "--bed needs --reference"),
            (["embed", bad, "--checkpoint", tmp_path / "nope", "-o", out], "no such checkpoint"),
            (["embed", bad, "--checkpoint", ck1, "-o", tmp_path / "e.csv"], "unsupported extension"),
            (["embed", bad, "--checkpoint", ck1, "-o", out, "--window", 100, "--overlap", 100], "--overlap 100"),
            (["score", tmp_path / "missing.fa", "--checkpoint", ck1], "missing.fa"),
            (["generate", "--checkpoint", ck1, "--prompt", "ACGU!"], "--prompt"),
            (["chunks", "--checkpoint", ck1], "exactly one of")):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert list(tmp_path.iterdir()) == [bad]
    with pytest.raises(UserError, match="rc_average is for DNA"):  # the API names its parameter
        from hnet_seq.inference.embed import embed

        embed(make_checkpoint(tmp_path / "b", "tiny_1stage.json", "bytes"), [bad], tmp_path / "x.parquet",
              rc_average=True, progress=False)


def test_library_errors_name_the_parameter_and_the_cli_its_flag(ck1, tmp_path):
    """The API says ``window=1``; the CLI says ``--window 1`` for the same mistake."""
    from hnet_seq.inference.embed import embed

    fasta = tmp_path / "a.fa"
    fasta.write_text(">a\n" + "ACGT" * 50 + "\n")
    with pytest.raises(UserError, match="^window=1: must be at least 2$"):
        embed(ck1, [fasta], tmp_path / "e.parquet", window=1, progress=False)
    with pytest.raises(UserError, match="^give bed or region, not both$"):
        embed(ck1, [], tmp_path / "e.parquet", bed=fasta, region="a:1-10", progress=False)
    r = invoke("embed", fasta, "--checkpoint", ck1, "-o", tmp_path / "e.parquet", "--window", 1)
    assert r.exit_code == 2 and r.output.strip() == "error: --window 1: must be at least 2", r.output
    r = invoke("embed", "--bed", fasta, "--region", "a:1-10", "--checkpoint", ck1, "-o", tmp_path / "e.parquet")
    assert r.exit_code == 2 and r.output.strip() == "error: give --bed or --region, not both", r.output
    assert list(tmp_path.iterdir()) == [fasta]
