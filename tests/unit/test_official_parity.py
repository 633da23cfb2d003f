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
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
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
    decisive_routing(model.embeddings.weight)
    for module in model.modules():
        if hasattr(module, "use_mem_eff_path"):
            # the fused path needs causal-conv1d's CUDA build; the unfused one takes the stand-in
            module.use_mem_eff_path = False
    return model.eval()


def decisive_routing(table: torch.Tensor) -> None:
    """Two token classes with opposite embeddings (plus noise): at random init every adjacent
    pair then has cosine near ±1, so boundary probabilities sit near 0 or 1.  With plain random
    embeddings they all sit near 1/2, and bf16 rounding alone flips decisions between any two
    implementations, which would say nothing about either."""
    with torch.no_grad():
        direction = torch.randn(table.shape[1], device=table.device)
        sign = torch.where(torch.arange(table.shape[0], device=table.device) % 2 == 0, 1.0, -1.0)
        table.copy_(sign[:, None] * direction + 0.1 * torch.randn_like(table, dtype=torch.float32))


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
        official_out = official(ids)
        theirs = official_out.logits.float()
        our_out = ours(ids.flatten(), Packing.from_lengths([length] * batch, device="cuda"))
        mine = our_out.logits
        flips = sum(int((a.boundary_mask.flatten() != b.boundary_mask).sum()) if a.boundary_mask.numel() ==
                    b.boundary_mask.numel() else -1 for a, b in zip(official_out.bpred_output, our_out.routing))
        boundaries = [int(r.boundary_mask.sum()) for r in our_out.routing]
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
    report(config=name, boundaries=boundaries, boundary_flips=flips, packed_max_abs_diff=packed_diff, step_max_abs_diff=max(step_diffs),
           logit_max_abs=scale, device=torch.cuda.get_device_name())
    assert packed_diff <= 0.1 + 0.005 * scale
    assert max(step_diffs) <= 0.1 + 0.005 * scale
