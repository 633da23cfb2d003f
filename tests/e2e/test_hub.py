"""Hugging Face habits (issue 17 acceptance 1), through the real huggingface_hub code path.

There is no Hub access here, so a Hub cache is laid out in a temporary ``HF_HOME`` exactly as
``hf_hub_download`` leaves it (``models--org--name/{blobs,refs/main,snapshots/<rev>/...}``, the
snapshot files symlinks into ``blobs``), and the loading runs in a fresh interpreter with
``HF_HUB_OFFLINE=1`` (huggingface_hub reads its environment once, at import).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hnet_seq import HNetLM
from hnet_seq.checkpoint import build_model
from hnet_seq.config import load_config
from hnet_seq.hub import config_named_by, is_repo_id, packaged_configs, resolve_config
from hnet_seq.summary import build_meta

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "tests" / "data" / "official_state_dicts.json").read_text())
REVISION = "0123456789abcdef0123456789abcdef01234567"

# Runs under HF_HUB_OFFLINE=1: load each repo id given on the command line and save its logits
# on fixed tokens; then score a text file through the CLI with the official-layout repo id.
OFFLINE_SCRIPT = r"""
import sys, torch
from typer.testing import CliRunner
from hnet_seq import HNetLM
from hnet_seq.cli.main import app

out, text, *repos = sys.argv[1:]
logits = {}
for repo in repos:
    model = HNetLM.from_pretrained(repo)
    tokens = torch.arange(40).remainder(model.embeddings.num_embeddings)[None]
    logits[repo] = (model.forward_padded(tokens, torch.ones_like(tokens, dtype=torch.bool)).logits,
                    model.modality_info)
torch.save(logits, out + ".pt")
cli = CliRunner().invoke(app, ["score", text, "--checkpoint", repos[-1], "-o", out + ".tsv", "-q"])
missing = CliRunner().invoke(app, ["score", text, "--checkpoint", "testorg/not-cached", "-q"])
print("CLI", cli.exit_code, cli.output.strip().replace("\n", " | "))
print("MISSING", missing.exit_code, missing.output.strip().replace("\n", " | "))
"""


def _tiny(modality: str, seed: int) -> HNetLM:
    torch.manual_seed(seed)
    model, _ = build_model(load_config(ROOT / "configs" / "tiny_1stage.json"), modality)
    model.init_weights()
    for module in model.modules():  # boundaries neither all nor none
        if hasattr(module, "q_proj_layer"):
            torch.nn.init.normal_(module.q_proj_layer.weight, std=0.3)
    return model.eval()


def _logits(model: HNetLM) -> torch.Tensor:
    tokens = torch.arange(40).remainder(model.embeddings.num_embeddings)[None]
    with torch.no_grad():
        return model.forward_padded(tokens, torch.ones_like(tokens, dtype=torch.bool)).logits


def _into_hub_cache(cache: Path, repo_id: str, files: Path) -> None:
    """Lay ``files/*`` out as huggingface_hub's cache holds a downloaded snapshot of ``repo_id``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in sorted(files.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """Both repos in a fresh Hub cache, loaded by id in an offline interpreter."""
    tmp = tmp_path_factory.mktemp("hub")
    ours, official = _tiny("dna", 0), _tiny("bytes", 1)
    ours.save_pretrained(tmp / "ours")
    (tmp / "official").mkdir()
    torch.save(official.state_dict(), tmp / "official" / "tiny_1stage.pt")  # official layout: a bare state_dict
    cache = tmp / "hf" / "hub"
    _into_hub_cache(cache, "testorg/tiny-dna", tmp / "ours")
    _into_hub_cache(cache, "testorg/tiny_1stage", tmp / "official")
    text = tmp / "doc.txt"
    text.write_text("All human beings are born free and equal in dignity and rights.\n")
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(tmp / "out"), str(text),
                           "testorg/tiny-dna", "testorg/tiny_1stage"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = torch.load(tmp / "out.pt", weights_only=True)
    return {"ours": ours, "official": official, "loaded": loaded, "stdout": proc.stdout, "tmp": tmp}


def test_save_pretrained_writes_our_checkpoint_layout(offline_run):
    files = sorted(p.name for p in (offline_run["tmp"] / "ours").iterdir())
    assert files == ["README.md", "config.json", "modality.json", "model.safetensors"]
    assert json.loads((offline_run["tmp"] / "ours" / "modality.json").read_text())["name"] == "dna"


def test_from_pretrained_by_repo_id_offline_gives_identical_logits(offline_run):
    logits, modality = offline_run["loaded"]["testorg/tiny-dna"]
    assert torch.equal(logits, _logits(offline_run["ours"]))
    assert modality == {"name": "dna", "options": {}}


def test_official_pt_by_repo_id_needs_no_config(offline_run):
    logits, modality = offline_run["loaded"]["testorg/tiny_1stage"]
    assert torch.equal(logits, _logits(offline_run["official"]))
    assert modality["name"] == "bytes"
    assert "CLI 0" in offline_run["stdout"], offline_run["stdout"]
    rows = (offline_run["tmp"] / "out.tsv").read_text().splitlines()
    assert len(rows) == 2 and "doc.txt" in rows[1]


def test_uncached_repo_offline_is_one_line_error(offline_run):
    line = next(x for x in offline_run["stdout"].splitlines() if x.startswith("MISSING"))
    assert line.startswith("MISSING 2 error: testorg/not-cached: no such local path, and cannot fetch it from the "
                           "Hugging Face Hub")
    assert "Traceback" not in offline_run["stdout"]


def test_from_pretrained_local_directory_round_trip(tmp_path):
    model = _tiny("bytes", 2)
    model.save_pretrained(tmp_path / "m")
    assert torch.equal(_logits(HNetLM.from_pretrained(tmp_path / "m")), _logits(model))


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_official_repo_names_resolve_to_packaged_configs(name):
    stem = name[:-5]
    assert config_named_by(f"cartesia-ai/{stem}") == packaged_configs()[stem]
    assert config_named_by(f"/somewhere/{stem}.pt") == packaged_configs()[stem]
    assert resolve_config(stem) == packaged_configs()[stem]
    model = build_meta(load_config(config_named_by(f"cartesia-ai/{stem}")))
    assert sum(p.numel() for p in model.parameters()) == MANIFEST[name]["num_params"]


def test_repo_ids_and_names():
    assert is_repo_id("cartesia-ai/hnet_2stage_L")
    assert not is_repo_id("hnet_2stage_L.pt") and not is_repo_id("runs/a/b") and not is_repo_id("./x")
    assert config_named_by("hnet_2stage_XL_code.pt") != config_named_by("hnet_2stage_XL.pt")
    assert config_named_by("my_model.pt") is None


def test_info_lists_packaged_configs_and_takes_a_name():
    from typer.testing import CliRunner

    from hnet_seq.cli.main import app

    listed = CliRunner().invoke(app, ["info", "--list-configs"])
    assert listed.exit_code == 0, listed.output
    names = listed.output.splitlines()[0].split(": ", 1)[1].split()
    assert names == sorted(p.stem for p in (ROOT / "configs").glob("*.json"))
    by_name = CliRunner().invoke(app, ["info", "--config", "hnet_2stage_XL"])
    assert by_name.exit_code == 0 and "1,603,492,224" in by_name.output
    bad = CliRunner().invoke(app, ["info", "--config", "hnet_3stage_L"])
    assert bad.exit_code == 2 and "packaged: hnet_1stage_L" in bad.output
