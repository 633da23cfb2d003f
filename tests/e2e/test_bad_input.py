"""Bad user input through the CLI: one ``error:`` line naming the file, record or flag, exit 2.

One test per kind of bad input (files that raise foreign exceptions, unwritable outputs,
values that must be refused, contents that used to be accepted silently).  Every test drives
the real command with typer's CliRunner on a tiny random checkpoint and real sequence.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, invoke, make_checkpoint, small_fasta


def one_line_error(result, *needles: str) -> str:
    """Exit 2, a single ``error:`` line on stderr, no traceback, and every needle in it."""
    text = result.stderr.strip()
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.output
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna", "tiny_1stage.json", random_routing=False)


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return small_fasta(tmp_path_factory.mktemp("fa") / "small.fa", 3000)


@pytest.fixture
def reference(tmp_path, fasta) -> tuple[Path, Path]:
    """A copy of the small FASTA and a BED of one interval on it."""
    ref = tmp_path / "ref.fa"
    shutil.copy(fasta, ref)
    name = ref.read_text().split()[0][1:]
    bed = tmp_path / "one.bed"
    bed.write_text(f"{name}\t100\t400\n")
    return ref, bed


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


# ---- files that raised foreign exceptions -----------------------------------------------------


def test_reference_with_a_garbage_fai(tmp_path, ck, reference):
    ref, bed = reference
    Path(str(ref) + ".fai").write_text("garbage that is not an index\n")
    result = invoke("embed", "--bed", bed, "--reference", ref, "--checkpoint", ck, "-o", tmp_path / "e.parquet", "-q")
    one_line_error(result, f"{ref}.fai", "delete it to rebuild")
    assert not (tmp_path / "e.parquet").exists()


def test_reference_that_is_a_directory(tmp_path, ck, reference):
    _, bed = reference
    result = invoke("embed", "--bed", bed, "--reference", tmp_path, "--checkpoint", ck, "-o", tmp_path / "e.parquet")
    one_line_error(result, str(tmp_path), "is a directory")


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "pickle"])
def test_bad_model_safetensors(tmp_path, ck, fasta, kind):
    bad = tmp_path / "ck"
    shutil.copytree(ck, bad)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[:len(data) // 2], "empty": b"", "garbage": os.urandom(4096),
                         "pickle": pickle.dumps({"embeddings.weight": [1.0, 2.0]})}[kind])
    one_line_error(invoke("score", fasta, "--checkpoint", bad, "-q"), str(weights), "safetensors")


def test_modality_json_that_is_not_json(tmp_path, ck, fasta):
    bad = tmp_path / "ck"
    shutil.copytree(ck, bad)
    (bad / "modality.json").write_text('{"name": "dna", ')
    one_line_error(invoke("score", fasta, "--checkpoint", bad, "-q"), str(bad / "modality.json"), "not valid")


def test_unknown_kernel_backend():
    one_line_error(invoke("--kernels", "warp-drive", "info", "--config", "dna-tiny.yaml"), "--kernels warp-drive",
                   "unknown backend")


# ---- unwritable outputs -------------------------------------------------------------------------

def _outputs(ck, fasta, target):
    return {
        "embed --out": ["embed", fasta, "--checkpoint", ck, "-o", target / "out.parquet", "-q"],
        "score --out": ["score", fasta, "--checkpoint", ck, "-o", target / "out.tsv", "-q"],
        "generate --out": ["generate", "--checkpoint", ck, "-p", "ACGT", "-n", "4", "-o", target / "out.fa"],
        "score --per-position": ["score", fasta, "--checkpoint", ck, "--per-position", target / "lp.parquet", "-q"],
        "embed --chunks-out": ["embed", fasta, "--checkpoint", ck, "-o", target.parent / "ok.parquet", "--chunks",
                               "--chunks-out", target / "chunks.parquet", "-q"],
        "chunks --html": ["chunks", fasta, "--checkpoint", ck, "--html", target / "c.html"],
        "shard --out": ["shard", "-m", "dna", fasta, "--out", target / "shards"],
    }


@pytest.mark.parametrize("case", list(_outputs("ck", "fa", Path("x"))))
def test_output_under_a_regular_file(tmp_path, ck, fasta, a_file, case):
    """``--out a_file/out.parquet`` (FileExistsError / NotADirectoryError before): refused, nothing written."""
    args = _outputs(ck, fasta, a_file)[case]
    one_line_error(invoke(*args), str(a_file), "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys").is_dir(), reason="needs root on Linux (/sys refuses files)")
@pytest.mark.parametrize("case", ["embed --out", "score --out", "generate --out", "chunks --html"])
def test_output_where_writing_is_refused(tmp_path, ck, fasta, case):
    """``--out /sys/x`` (PermissionError before): the message names the output."""
    args = _outputs(ck, fasta, Path("/sys"))[case]
    one_line_error(invoke(*args), "/sys/", "cannot write")


# ---- values checked at the flag -----------------------------------------------------------------


@pytest.mark.parametrize("args, flag", [
    (["embed", "{fa}", "--checkpoint", "{ck}", "-o", "{tmp}/e.parquet", "--batch-tokens", "-1"], "--batch-tokens -1"),
    (["score-variants", "--vcf", "{tmp}/v.vcf", "--reference", "{fa}", "--checkpoint", "{ck}", "--batch-tokens", "-1"],
     "--batch-tokens -1"),
    (["generate", "--checkpoint", "{ck}", "-p", "ACGT", "-t", "-1"], "--temperature -1"),
    (["shard", "-m", "dna", "{fa}", "--out", "{tmp}/s", "--max-shard-mb", "-1"], "--max-shard-mb -1"),
    (["info", "--config", "dna-tiny.yaml", "--device", "tpu"], "--device tpu"),
])
def test_values_refused_at_the_flag(tmp_path, ck, fasta, args, flag):
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    args = [a.format(fa=fasta, ck=ck, tmp=tmp_path) for a in args]
    one_line_error(invoke(*args), flag)
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "s").exists()


def test_cuda_device_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_line_error(invoke("info", "--config", "dna-tiny.yaml", "--device", "cuda:0"), "--device cuda:0",
                   "not available")


# ---- contents that were accepted silently or reported unhelpfully --------------------------------


def _with_nul(tmp_path, fasta) -> tuple[Path, str, int]:
    lines = fasta.read_text().splitlines()
    name = lines[0][1:].split()[0]
    lines[3] = lines[3][:7] + "\0" + lines[3][8:]  # sequence line 3: position 2*60 + 7
    path = tmp_path / "nul.fa"
    path.write_text("\n".join(lines) + "\n")
    return path, name, 2 * 60 + 7


def test_fasta_with_a_nul_byte_streamed(tmp_path, ck, fasta):
    path, name, pos = _with_nul(tmp_path, fasta)
    one_line_error(invoke("embed", path, "--checkpoint", ck, "-o", tmp_path / "e.parquet", "-q"),
                   str(path), f"record '{name}'", f"position {pos}", "NUL")
    one_line_error(invoke("shard", "-m", "dna", path, "--out", tmp_path / "s"), f"record '{name}'", "NUL")
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "s").exists()


def test_fasta_with_a_nul_byte_by_random_access(tmp_path, ck, fasta):
    path, name, pos = _with_nul(tmp_path, fasta)
    bed = tmp_path / "one.bed"
    bed.write_text(f"{name}\t0\t1000\n")
    one_line_error(invoke("embed", "--bed", bed, "--reference", path, "--checkpoint", ck, "-o", tmp_path / "e.parquet"),
                   str(path), f"record '{name}'", f"position {pos}", "NUL")


def test_fasta_with_a_control_byte(tmp_path, ck, fasta):
    lines = fasta.read_text().splitlines()
    lines[1] = lines[1][:5] + "\x07" + lines[1][6:]
    path = tmp_path / "bell.fa"
    path.write_text("\n".join(lines) + "\n")
    one_line_error(invoke("score", path, "--checkpoint", ck, "-q"), str(path), "position 5", "record")


def test_truncated_gzip_fasta(tmp_path, ck, fasta):
    data = gzip.compress(fasta.read_bytes())
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[:len(data) * 2 // 3])
    one_line_error(invoke("score", path, "--checkpoint", ck, "-q"), str(path), "truncated")


def test_truncated_bgzip_reference(tmp_path, ck, reference):
    import pysam

    ref, bed = reference
    pysam.tabix_compress(str(ref), str(tmp_path / "ref.fa.gz"))
    data = (tmp_path / "ref.fa.gz").read_bytes()
    cut = tmp_path / "cut.fa.gz"
    cut.write_bytes(data[:len(data) // 2])
    result = invoke("embed", "--bed", bed, "--reference", cut, "--checkpoint", ck, "-o", tmp_path / "e.parquet")
    one_line_error(result, str(cut), "truncated")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cut")) == ["cut.fa.gz"]


def test_truncated_tar_shard(tmp_path, ck, fasta):
    assert invoke("shard", "-m", "dna", fasta, "--out", tmp_path / "s").exit_code == 0
    whole = (tmp_path / "s" / "shard-000000.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:len(whole) // 2])
    one_line_error(invoke("score", cut, "--checkpoint", ck, "-q"), str(cut), "truncated")


def test_stale_fai_is_rebuilt(tmp_path, ck, reference):
    """A .fai older than its FASTA is rebuilt: the bases read are the new file's."""
    ref, bed = reference
    text = ref.read_text()
    assert invoke("embed", "--bed", bed, "--reference", ref, "--checkpoint", ck, "-o", tmp_path / "a.parquet",
                  "-q").exit_code == 0
    name, seq = text.split("\n", 1)
    seq = seq.replace("\n", "")
    rewrapped = seq[50:] + seq[:50]  # other bases at the same offsets, other line width
    ref.write_text(name + "\n" + "\n".join(rewrapped[i:i + 70] for i in range(0, len(rewrapped), 70)) + "\n")
    fai = Path(str(ref) + ".fai")
    old = fai.stat().st_mtime_ns
    os.utime(fai, ns=(old - 10**9, old - 10**9))
    from hnet_seq.modalities import fasta as fa_mod

    handle = fa_mod.open_indexed(ref)
    assert handle.fetch(name[1:].split()[0], 100, 400) == rewrapped[100:400]
    assert fai.stat().st_mtime_ns >= ref.stat().st_mtime_ns


def test_mismatched_fai_is_reported(tmp_path, ck, reference):
    """An index as new as the FASTA but for another layout: named, not read as shifted bases."""
    ref, bed = reference
    assert invoke("embed", "--bed", bed, "--reference", ref, "--checkpoint", ck, "-o", tmp_path / "a.parquet",
                  "-q").exit_code == 0
    name, seq = ref.read_text().split("\n", 1)
    seq = seq.replace("\n", "")
    ref.write_text(name + "\n" + "\n".join(seq[i:i + 50] for i in range(0, len(seq), 50)) + "\n")
    fai = Path(str(ref) + ".fai")
    os.utime(fai, ns=(time.time_ns() + 10**9,) * 2)
    result = invoke("embed", "--bed", bed, "--reference", ref, "--checkpoint", ck, "-o", tmp_path / "b.parquet")
    one_line_error(result, str(ref), str(fai), "does not match")


def test_audio_with_nan_samples(tmp_path):
    import soundfile as sf

    x = np.sin(np.arange(4000, dtype=np.float32) / 10)
    x[1234] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    one_line_error(invoke("shard", "-m", "audio", path, "--out", tmp_path / "s"), str(path), "sample 1234", "nan")
    assert not (tmp_path / "s").exists()


class _Payload:
    """Unpickling this runs ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_official_pt_refused_before_the_model_is_built(tmp_path, fasta, monkeypatch):
    marker = tmp_path / "pwned"
    pt = tmp_path / "evil.pt"
    torch.save({"model": {"embeddings.weight": torch.zeros(2)}, "x": _Payload(marker)}, pt)
    import hnet_seq.checkpoint as checkpoint

    def no_build(*a, **k):
        raise AssertionError("the model was built before the file was checked")

    monkeypatch.setattr(checkpoint, "build_model", no_build)
    result = invoke("score", fasta, "--checkpoint", pt, "--config", ROOT / "configs" / "tiny_1stage.json", "-q")
    one_line_error(result, str(pt), "cannot read checkpoint")
    assert not marker.exists()


# ---- a failed start leaves the run directory as it found it -------------------------------------


def test_train_on_a_corrupt_shard_leaves_no_run(tmp_path):
    from helpers import micro_config

    cfg = micro_config(tmp_path, steps=2)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(os.urandom(3000))
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine\n")
    for run in (fresh, existing):
        one_line_error(invoke("train", "--config", cfg, "--data", bad, "--out", run, "-q"), str(bad),
                       "not a readable shard")
    assert not fresh.exists()
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    ok = invoke("train", "--config", cfg, "--out", existing, "-q")  # the same --out then starts
    assert ok.exit_code == 0, ok.output


def test_resume_of_a_run_without_checkpoint_starts_afresh(tmp_path):
    from helpers import micro_config

    cfg = micro_config(tmp_path, steps=2, checkpoint={"every": 0, "at_end": False})
    run = tmp_path / "run"
    assert invoke("train", "--config", cfg, "--out", run).exit_code == 0
    assert not (run / "checkpoints").exists() and (run / "metrics.jsonl").exists()
    again = invoke("train", "--config", cfg, "--out", run, "--resume", "--set", "checkpoint.at_end=true")
    assert again.exit_code == 0, again.output
    assert "no checkpoint yet; starting afresh" in again.output
    from hnet_seq.train.metrics import read_metrics

    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "train"]
    assert steps == [1, 2] and (run / "checkpoints" / "latest" / "model.safetensors").exists()
