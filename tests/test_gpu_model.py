"""Whole-model fast path against the reference path on the GPU (forward and backward)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hnet_seq import HNetLM, Packing, load_config
from hnet_seq.kernels import force_backend

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RESULTS = Path(os.environ.get("HNET_PARITY_OUT", "/tmp")) / "gpu_model.jsonl"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def run(model, tokens, packing, backend, autocast):
    model.zero_grad(set_to_none=True)
    with force_backend(backend), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = model(tokens, packing)
        loss = torch.nn.functional.cross_entropy(out.logits[:-1].float(), tokens[1:])
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    masks = [r.boundary_mask for r in out.routing]
    return out.logits.detach(), grads, masks


@pytest.mark.parametrize("autocast, tol", [(False, 1e-3), (True, 1e-2)])
def test_fast_equals_reference_for_2stage_model(autocast, tol):
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / "tiny_2stage.json")
    model = HNetLM(cfg, device="cuda")
    model.init_weights()
    lengths = [700, 1500, 64, 2000]
    packing = Packing.from_lengths(lengths, device="cuda")
    tokens = torch.randint(0, 256, (sum(lengths),), device="cuda")
    ref_logits, ref_grads, ref_masks = run(model, tokens, packing, "reference", autocast)
    fast_logits, fast_grads, fast_masks = run(model, tokens, packing, "fast", autocast)
    # Identical routing first: a flipped boundary would change everything after it.
    flips = sum(int((a != b).sum()) for a, b in zip(ref_masks, fast_masks))
    logit_err = rel_err(fast_logits, ref_logits)
    grad_err = max(rel_err(fast_grads[n], ref_grads[n]) for n in ref_grads if ref_grads[n].abs().max() > 0)
    with RESULTS.open("a") as f:
        f.write(json.dumps(dict(autocast=autocast, boundary_flips=flips, logits_rel_err=logit_err,
                                max_grad_rel_err=grad_err, device=torch.cuda.get_device_name())) + "\n")
    assert flips == 0
    assert logit_err <= tol
    assert grad_err <= 10 * tol


def test_packed_equals_per_sequence_on_fast_path():
    torch.manual_seed(1)
    model = HNetLM(load_config(CONFIGS / "tiny_2stage.json"), device="cuda")
    model.init_weights()
    lengths = [333, 1024, 77]
    tokens = [torch.randint(0, 256, (n,), device="cuda") for n in lengths]
    with torch.no_grad(), force_backend("fast"):
        packed = model(torch.cat(tokens), Packing.from_lengths(lengths, device="cuda")).logits
        start = 0
        for t in tokens:
            alone = model(t, Packing.from_lengths([len(t)], device="cuda")).logits
            assert rel_err(packed[start:start + len(t)], alone) <= 1e-3
            start += len(t)
