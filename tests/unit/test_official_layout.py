"""Our parameter names and shapes equal the official ``HNetForCausalLM`` for all six configs.

``tests/data/official_state_dicts.json`` was produced by instantiating goombalab/hnet's model on
the meta device (``tools/official_manifest.py``); here ours is built on the meta device too.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hnet_seq import load_config
from hnet_seq.summary import build_meta

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "tests" / "data" / "official_state_dicts.json").read_text())


def test_manifest_covers_the_six_official_configs():
    assert sorted(MANIFEST) == sorted(p.name for p in (ROOT / "configs").glob("hnet_*stage_*.json"))


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_state_dict_keys_and_shapes_equal_official(name):
    model = build_meta(load_config(ROOT / "configs" / name))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = MANIFEST[name]["state_dict"]
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: v for k, v in ours.items() if v != official[k]} == {}
    assert sum(p.numel() for p in model.parameters()) == MANIFEST[name]["num_params"]
