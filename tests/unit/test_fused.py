"""Fused ops equal their references (forward and gradients); activation checkpointing is exact.

On CPU the fast versions run as what they are: ``torch.compile`` (Inductor's C++ backend
here, Triton on CUDA) and the chunked cross-entropy in plain PyTorch.  The ``gpu`` tests run
the whole model through the registry on CUDA with the fused ops on and off.
"""
from __future__ import annotations

import pytest
import torch

from hnet_seq import HNetLM, Packing, kernels, load_config
from hnet_seq.config import ConfigError
from hnet_seq.kernels import fused
from hnet_seq.nn.isotropic import set_activation_checkpointing
from hnet_seq.train import load_run_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _grads(fn, *inputs):
    """``fn``'s outputs and the gradients of a fixed random projection of them w.r.t. ``inputs``."""
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(1)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs], [t.grad for t in inputs if t.requires_grad]


def _assert_close(a, b, **tol):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("branch_dtype", [torch.float32, torch.bfloat16])
def test_add_rmsnorm_compiled_equals_reference(branch_dtype):
    torch.manual_seed(0)
    branch = torch.randn(37, 48).to(branch_dtype)
    residual, weight = torch.randn(37, 48), torch.rand(48) + 0.5
    ref = _grads(lambda b, r, w: fused.add_rmsnorm_reference(b, r, w, eps=1e-5), branch, residual, weight)
    fast = _grads(lambda b, r, w: fused.add_rmsnorm_fast(b, r, w, eps=1e-5), branch, residual, weight)
    assert ref[0][1].dtype == torch.float32  # the residual stays fp32
    _assert_close(ref[0], fast[0], rtol=1e-5, atol=1e-5)
    _assert_close(ref[1], fast[1], rtol=1e-4, atol=1e-4)


def test_swiglu_compiled_equals_reference():
    torch.manual_seed(0)
    h = torch.randn(29, 2 * 64)
    ref, fast = _grads(fused.swiglu_reference, h), _grads(fused.swiglu_fast, h)
    assert ref[0][0].shape == (29, 64)
    _assert_close(ref[0], fast[0], rtol=1e-5, atol=1e-5)
    _assert_close(ref[1], fast[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_cross_entropy_equals_full_logits(autocast):
    torch.manual_seed(0)
    hidden, weight = torch.randn(203, 32), torch.randn(11, 32) * 0.3
    targets = torch.randint(0, 11, (203,))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)

    def run(fn):
        with ctx:
            return _grads(lambda h, w: fn(h, w, targets, chunk=64), hidden, weight)

    ref, fast = run(fused.linear_cross_entropy_reference), run(fused.linear_cross_entropy_fast)
    assert ref[0][0].shape == (203,) and ref[0][0].dtype == fast[0][0].dtype == torch.float32
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-5)
    _assert_close(ref[0], fast[0], **tol)
    _assert_close(ref[1], fast[1], **tol)
    assert [g.dtype for g in fast[1]] == [torch.float32, torch.float32]


def _model_grads(cfg, mode: str, device="cpu", autocast=False):
    torch.manual_seed(0)
    model = HNetLM(cfg, device=device)
    model.init_weights()
    set_activation_checkpointing(model, mode)
    packing = Packing.from_lengths([70, 50], device=device)
    tokens = torch.randint(0, cfg.vocab_size, (120,), generator=torch.Generator().manual_seed(3)).to(device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        out = model(tokens, packing)
        loss = torch.nn.functional.cross_entropy(out.logits[:-1].float(), tokens[1:])
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["blocks", "stages"])
def test_activation_checkpointing_gives_the_same_gradients(mode):
    cfg = load_config("configs/tiny_2stage.json")
    loss, grads = _model_grads(cfg, "none")
    loss_ckpt, grads_ckpt = _model_grads(cfg, mode)
    torch.testing.assert_close(loss, loss_ckpt, rtol=0, atol=0)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ckpt[name], rtol=1e-6, atol=1e-7, msg=name)


def test_activation_checkpointing_is_a_validated_config_field():
    cfg = load_run_config("dna-tiny", ["train.activation_checkpointing=blocks"])
    assert cfg.train.activation_checkpointing == "blocks"
    with pytest.raises(ConfigError, match="train.activation_checkpointing"):
        load_run_config("dna-tiny", ["train.activation_checkpointing=layers"])


@pytest.mark.gpu
@cuda
def test_fused_ops_in_the_model_equal_reference_on_gpu():
    """The whole model under bf16 autocast, the three fused ops fast vs reference (registry)."""
    cfg = load_config("configs/tiny_2stage.json")
    runs = {}
    for backend in ("reference", "fast"):
        with kernels.force_backend(backend, "add_rmsnorm"), kernels.force_backend(backend, "swiglu"):
            runs[backend] = _model_grads(cfg, "none", device="cuda", autocast=True)
    (loss_r, grads_r), (loss_f, grads_f) = runs["reference"], runs["fast"]
    torch.testing.assert_close(loss_r, loss_f, rtol=1e-3, atol=1e-3)
    for name in grads_r:
        torch.testing.assert_close(grads_r[name], grads_f[name], rtol=5e-2, atol=5e-3, msg=name)


@pytest.mark.gpu
@cuda
def test_fused_pieces_on_gpu_equal_reference():
    torch.manual_seed(0)
    branch, residual = torch.randn(4099, 512, device="cuda").bfloat16(), torch.randn(4099, 512, device="cuda")
    weight = torch.rand(512, device="cuda") + 0.5
    with kernels.force_backend("reference", "rmsnorm"):  # the Triton RMSNorm agrees only to bf16 rounding
        ref = _grads(lambda b, r, w: kernels.add_rmsnorm.reference(b, r, w), branch, residual, weight)
    fast = _grads(lambda b, r, w: fused.add_rmsnorm_fast(b, r, w), branch, residual, weight)
    _assert_close(ref[0], fast[0], rtol=1e-4, atol=1e-4)
    _assert_close(ref[1], fast[1], rtol=1e-2, atol=2e-2)  # the branch's gradient is bf16: one ulp at |g| ~ 2
    h = torch.randn(4099, 2 * 1408, device="cuda").bfloat16()
    _assert_close(_grads(fused.swiglu_reference, h)[1], _grads(fused.swiglu_fast, h)[1], rtol=2e-2, atol=2e-2)
    hidden, w = torch.randn(20000, 256, device="cuda"), torch.randn(256, 256, device="cuda") * 0.05
    targets = torch.randint(0, 256, (20000,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref = _grads(lambda a, b: fused.linear_cross_entropy_reference(a, b, targets), hidden, w)
        fast = _grads(lambda a, b: fused.linear_cross_entropy_fast(a, b, targets, chunk=4096), hidden, w)
    _assert_close(ref[0], fast[0], rtol=2e-2, atol=2e-2)
    # The weight gradient sums 20000 bf16 products: compare as a whole (bf16 rounds each element
    # of the reference's single GEMM and of the chunked partial sums differently).
    for r, f in zip(ref[1], fast[1], strict=True):
        assert (r.float() - f.float()).norm() <= 1e-2 * r.float().norm()
