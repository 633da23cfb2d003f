"""SIGTERM and SIGHUP mid-run, handled like Ctrl-C: no temporary file, no partial folder, no output,
a non-zero exit with one line; ``train`` saves a checkpoint that resumes bitwise on CPU.

Each command runs as a real subprocess; the signal is sent once its temporary output exists
(so the run is known to be under way, writing).
"""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hnet_seq.cli.main import app
from hnet_seq.train.metrics import read_metrics
from helpers import cli_popen, make_checkpoint, micro_config, small_fasta, train_steps, wait_for


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna", "tiny_1stage.json", random_routing=False)


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return small_fasta(tmp_path_factory.mktemp("fa") / "small.fa", 60000)


def _interrupt(proc, folder: Path, sig: int) -> str:
    """Send ``sig`` once a temporary file or partial folder is in ``folder``; the stderr."""
    wait_for(lambda: any(_debris(folder)), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("shard ")]
    assert lines == [f"interrupted ({name}): no output written"], err
    return err


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".tmp" in p.name or ".partial-" in p.name)


def _vcf(path: Path, fasta: Path, n: int = 400) -> Path:
    name, seq = fasta.read_text().split("\n", 1)
    seq = seq.replace("\n", "")
    rows = [f"{name[1:]}\t{pos + 1}\t.\t{seq[pos]}\t{'A' if seq[pos] != 'A' else 'C'}\t.\tPASS\t."
            for pos in range(1000, 1000 + 100 * n, 100)]
    header = ["##fileformat=VCFv4.2", f"##contig=<ID={name[1:]},length={len(seq)}>",
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    path.write_text("\n".join(header + rows) + "\n")
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_embed_interrupted(tmp_path, ck, fasta, sig):
    out = tmp_path / "out"
    proc = cli_popen("embed", str(fasta), "--checkpoint", str(ck), "-o", str(out / "e.parquet"), "--chunks", "-q",
                     "--window", "512")
    _interrupt(proc, out, sig)
    assert _debris(out) == [] and list(out.iterdir()) == []


def test_score_interrupted(tmp_path, ck, fasta):
    out = tmp_path / "out"
    proc = cli_popen("score", str(fasta), "--checkpoint", str(ck), "-o", str(out / "s.tsv"), "--per-position",
                     str(out / "lp.parquet"), "-q", "--window", "512")
    _interrupt(proc, out, signal.SIGTERM)
    assert list(out.iterdir()) == []


def test_score_variants_interrupted(tmp_path, ck, fasta):
    out = tmp_path / "out"
    out.mkdir()
    ref = tmp_path / "ref.fa"
    shutil.copy(fasta, ref)
    vcf = _vcf(tmp_path / "calls.vcf", ref)
    proc = cli_popen("score-variants", "--vcf", str(vcf), "--reference", str(ref), "--checkpoint", str(ck),
                     "-o", str(out / "v.tsv"), "--vcf-out", str(out / "v.vcf"), "--window", "256", "-q")
    _interrupt(proc, out, signal.SIGTERM)
    assert list(out.iterdir()) == []


def test_shard_interrupted(tmp_path, fasta):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(300):  # links: many input files at no disk cost, so the run lasts
        (inputs / f"part{i:03d}.fa").symlink_to(fasta)
    proc = cli_popen("shard", "-m", "dna", str(inputs), "--out", str(tmp_path / "shards"), "--max-shard-mb", "0.05")
    _interrupt(proc, tmp_path, signal.SIGTERM)
    assert _debris(tmp_path) == [] and not (tmp_path / "shards").exists()


DETERMINISTIC = ("loss", "nll", "bits_per_unit", "ratio_loss", "compression", "boundary_prob", "lr", "grad_norm",
                 "units", "positions")


def _history(run: Path) -> list[dict]:
    return [{k: r.get(k) for k in ("kind", "step", *DETERMINISTIC)} for r in read_metrics(run)
            if r["kind"] in ("train", "eval")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_train_interrupted_checkpoints_and_resumes_bitwise(tmp_path, sig):
    """Uninterrupted (in this process) == stopped by ``sig`` (subprocess, its own checkpoint) + resumed."""
    steps = 24
    cfg = micro_config(tmp_path, steps=steps, checkpoint={"every": 0}, logging={"every": 1, "eval_every": 8,
                                                                                "progress": "off"})
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    proc = cli_popen("train", "--config", str(cfg), "--out", str(stopped))
    wait_for(lambda: len(train_steps(stopped)) >= 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert f"{signal.Signals(sig).name} at step" in err and "--resume" in err and "Traceback" not in err
    assert _debris(stopped) == []
    at = int((stopped / "checkpoints" / "latest").resolve().name.split("_")[1])
    assert 2 <= at < steps and train_steps(stopped)[-1] == at
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(cfg), "--out", str(full)]).exit_code == 0
    resumed = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(stopped), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert _history(full) == _history(stopped)  # every logged float equal, exactly
    from safetensors.torch import load_file

    wa = load_file(full / "checkpoints" / "latest" / "model.safetensors")
    wb = load_file(stopped / "checkpoints" / "latest" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_outputs_interrupted_while_finishing_publish_none(tmp_path, monkeypatch):
    """An interrupt during the last writes (here: the second table's) leaves no table at all,
    not the first one renamed and the second missing."""
    import pyarrow as pa

    from hnet_seq.inference.outputs import Outputs
    from hnet_seq.inference.tables import TableWriter

    schema = pa.schema([pa.field("x", pa.int64())])
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    with pytest.raises(KeyboardInterrupt):
        with Outputs() as outs:
            a = outs.add(TableWriter(first, schema))
            b = outs.add(TableWriter(second, schema))
            a.write_row(x=1)
            b.write_row(x=2)

            def interrupted():
                raise KeyboardInterrupt

            monkeypatch.setattr(b, "finish", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
