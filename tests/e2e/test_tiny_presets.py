"""``bytes-tiny`` and ``audio-tiny`` (issue 17 acceptance 3): they validate, their default data
ships with the package, and a short real run on it lowers held-out bits.

The full 300-step figures quoted in the README come from ``hnet-seq train --config NAME`` runs
(2-3 minutes on a shared 2-core CPU); here a few dozen steps must already show the drop.
"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hnet_seq.cli.main import app
from hnet_seq.modalities import get_adapter
from hnet_seq.train import load_run_config
from hnet_seq.train.data import default_paths
from hnet_seq.train.metrics import read_metrics


@pytest.mark.parametrize("name, modality, records", [("bytes-tiny", "bytes", 6), ("audio-tiny", "audio", 6)])
def test_preset_default_data_ships_with_the_package(name, modality, records):
    cfg = load_run_config(name)
    assert cfg.modality.name == modality and cfg.model_config.num_stages == 2
    adapter = get_adapter(modality, **cfg.modality.options)
    paths = default_paths(adapter)
    assert len(paths) == 1 and "hnet_seq/resources" in paths[0].replace("\\", "/")
    got = list(adapter.read_records(paths))
    assert len(got) == records
    if modality == "bytes":
        assert sorted(r.meta["lang"] for r in got) == ["deu", "eng", "fra", "spa", "swh", "yor"]
        assert all(len(r) > 8000 for r in got)
    else:
        assert all(r.meta["sample_rate"] == r.meta["orig_rate"] == 8000 for r in got)
        assert sum(len(r) for r in got) / 8000 > 15


@pytest.mark.slow
@pytest.mark.parametrize("name, unit", [("bytes-tiny", "byte"), ("audio-tiny", "sample")])
def test_preset_lowers_heldout_bits_quickly(tmp_path, name, unit):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--config", name, "--out", str(out), "--set", "train.steps=40",
                                      "--set", "logging.eval_every=40", "--set", "checkpoint.every=0"])
    assert result.exit_code == 0, result.output
    evals = [r for r in read_metrics(out) if r["kind"] == "eval"]
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == 40
    assert last["bits_per_unit"] < 0.8 * first["bits_per_unit"], (first, last)
    assert f"bits/{unit}" in result.output
