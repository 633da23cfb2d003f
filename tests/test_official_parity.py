"""Ours against the official goombalab/hnet ``HNetForCausalLM`` on the same random weights (GPU).

Needs a CUDA device, mamba-ssm, and an export of goombalab/hnet named by ``HNET_OFFICIAL_DIR``
(never committed here).  The official model runs with torch stand-ins for flash-attn and
causal-conv1d (``tests/official_standins.py``); ours runs its own fast kernels.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

OFFICIAL = os.environ.get("HNET_OFFICIAL_DIR")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not OFFICIAL, reason="set HNET_OFFICIAL_DIR to an export of goombalab/hnet"),
]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RESULTS = Path(os.environ.get("HNET_PARITY_OUT", "/tmp")) / "official_parity.jsonl"


def official_model(config_path: Path):
    from official_standins import install

    install()
    sys.path.insert(0, OFFICIAL)
    from hnet.models.config_hnet import AttnConfig, HNetConfig, SSMConfig
    from hnet.models.mixer_seq import HNetForCausalLM

    raw = json.loads(config_path.read_text())
    cfg = HNetConfig(**{k: v for k, v in raw.items() if k not in ("attn_cfg", "ssm_cfg")},
                     attn_cfg=AttnConfig(**raw["attn_cfg"]), ssm_cfg=SSMConfig(**raw["ssm_cfg"]))
    model = HNetForCausalLM(cfg, device="cuda", dtype=torch.bfloat16)
    model.init_weights()
    for module in model.modules():
        if hasattr(module, "use_mem_eff_path"):
            # the fused path needs causal-conv1d's CUDA build; the unfused one takes the stand-in
            module.use_mem_eff_path = False
    return model.eval()


def report(**row):
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("name", ["hnet_1stage_L.json", "hnet_2stage_L.json"])
def test_same_logits_as_official(name):
    from hnet_seq import HNetLM, Packing, load_config

    torch.manual_seed(0)
    official = official_model(CONFIGS / name)
    ours = HNetLM(load_config(CONFIGS / name), device="cuda", dtype=torch.bfloat16)
    ours.load_state_dict(official.state_dict(), strict=True)
    ours.eval()

    batch, length = 2, 1024
    ids = torch.randint(0, 256, (batch, length), device="cuda")
    with torch.no_grad():
        theirs = official(ids).logits.float()
        mine = ours(ids.flatten(), Packing.from_lengths([length] * batch, device="cuda")).logits
        packed_diff = (mine.float().view(batch, length, -1) - theirs).abs().max().item()

        steps = 64
        cache = official.allocate_inference_cache(1, steps, dtype=torch.bfloat16)
        state = ours.new_state(1, steps)
        step_diffs = []
        for t in range(steps):
            a = official.step(ids[:1, t:t + 1], cache).logits.float().reshape(-1)
            b = ours.step(ids[0, t:t + 1], state)[0].float().reshape(-1)
            step_diffs.append((a - b).abs().max().item())
    scale = theirs.abs().max().item()
    report(config=name, packed_max_abs_diff=packed_diff, step_max_abs_diff=max(step_diffs),
           logit_max_abs=scale, device=torch.cuda.get_device_name())
    assert packed_diff <= 0.1 + 0.005 * scale
    assert max(step_diffs) <= 0.1 + 0.005 * scale
