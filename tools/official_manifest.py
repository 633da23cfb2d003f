"""Write the state_dict manifest (key -> shape, in state_dict order) of the official H-Net models.

The official goombalab/hnet code is imported from a plain checkout and each of its six configs is
built on the meta device, so no weights are allocated (the XL models have 1.3B-1.8B parameters).
The result, ``tests/data/official_state_dicts.json``, lets our tests check checkpoint-key
compatibility without the official code, its CUDA-only kernels, or the checkpoints themselves.

    git -C /work/.mirror/goombalab+hnet/repo archive HEAD hnet configs | tar -x -C /tmp/hnet_official
    # optional, recommended: the mamba_ssm commit that hnet's pyproject pins
    git -C /work/.mirror/state-spaces+mamba/repo archive a6a1dae6 mamba_ssm | tar -x -C /tmp/mamba_src
    python tools/official_manifest.py --official /tmp/hnet_official --mamba /tmp/mamba_src

Only module *construction* has to work here, so kernels that are never called are stand-ins that
raise; RMSNorm and swiglu get small real implementations because they are cheap to write.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "official_state_dicts.json"


def _not_called(name):
    def kernel(*args, **kwargs):
        raise NotImplementedError(f"{name} is a construction-only stand-in (flash_attn / mamba_ssm kernels)")
    return kernel


class RMSNorm(nn.Module):
    """flash_attn.ops.triton.layer_norm.RMSNorm: same parameters (``weight``; ``bias`` is None)
    and the call used by the official Block/Isotropic: (x, residual, prenorm, residual_in_fp32)."""

    def __init__(self, hidden_size, eps=1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        summed = x if residual is None else x + residual
        if residual_in_fp32:
            summed = summed.float()
        h = summed.float()
        out = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)
        return (out, summed) if prenorm else out


class Mamba2StandIn(nn.Module):
    """Used only without --mamba: registers the parameters that mamba_ssm's Mamba2.__init__ registers
    (same names, order and shapes, single-process path, rmsnorm=True, D_has_hdim=False defaults).
    Values are irrelevant here (meta device), so no initialisation is reproduced."""

    def __init__(self, d_model, d_state=128, d_conv=4, expand=2, headdim=64, d_ssm=None, ngroups=1,
                 D_has_hdim=False, rmsnorm=True, bias=False, conv_bias=True, chunk_size=256,
                 layer_idx=None, device=None, dtype=None, **_):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.layer_idx = layer_idx
        d_inner = expand * d_model
        d_ssm = d_inner if d_ssm is None else d_ssm
        nheads = d_ssm // headdim
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=bias, **kw)
        conv_dim = d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1,
                                bias=conv_bias, **kw)
        self.dt_bias = nn.Parameter(torch.empty(nheads, **kw))
        self.A_log = nn.Parameter(torch.empty(nheads, **kw))
        # upstream creates D without dtype, so it stays fp32 in bf16 models
        self.D = nn.Parameter(torch.empty(d_ssm if D_has_hdim else nheads, device=device))
        if rmsnorm:
            self.norm = RMSNorm(d_ssm, eps=1e-5, **kw)  # gated RMSNorm: also weight + bias=None
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias, **kw)


def _install(name, **attrs):
    module = sys.modules[name] = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install_standins(mamba_dir: Path | None) -> None:
    """Put the kernel packages the official code imports into sys.modules (flash-attn and
    mamba-ssm need CUDA to build; causal-conv1d is imported optionally by mamba_ssm)."""
    attention = ["flash_attn_kvpacked_func", "flash_attn_qkvpacked_func", "flash_attn_varlen_kvpacked_func",
                 "flash_attn_varlen_qkvpacked_func", "flash_attn_with_kvcache"]
    _install("flash_attn", **{name: _not_called(name) for name in attention})
    for name in ["flash_attn.ops", "flash_attn.ops.triton", "flash_attn.utils"]:
        _install(name)
    _install("flash_attn.ops.triton.layer_norm", RMSNorm=RMSNorm)
    _install("flash_attn.ops.triton.rotary", apply_rotary=_not_called("apply_rotary"))
    _install("flash_attn.ops.activations", swiglu=lambda gate, y: F.silu(gate) * y)
    _install("flash_attn.utils.generation", GenerationMixin=type("GenerationMixin", (), {}))
    try:
        import optree  # noqa: F401  (only IsotropicInferenceParams.reset uses it)
    except ImportError:
        _install("optree")

    scan_names = ["mamba_chunk_scan_combined", "mamba_split_conv1d_scan_combined"]
    scan = {name: _not_called(name) for name in scan_names}
    if mamba_dir is None:
        for name in ["mamba_ssm", "mamba_ssm.modules", "mamba_ssm.ops", "mamba_ssm.ops.triton"]:
            _install(name)
        _install("mamba_ssm.modules.mamba2", Mamba2=Mamba2StandIn)
        _install("mamba_ssm.ops.triton.ssd_combined", **scan)
        return
    # The real Mamba2 class from a mamba source tree: an empty top-level package whose __path__ is the
    # source directory skips mamba_ssm/__init__.py (it imports compiled CUDA extensions); the submodules
    # Mamba2 needs (gated RMSNorm, tensor-parallel linears) import with just torch + triton + einops.
    package = _install("mamba_ssm")
    package.__path__ = [str(mamba_dir / "mamba_ssm")]
    importlib.import_module("mamba_ssm.ops.triton")
    _install("mamba_ssm.ops.triton.ssd_combined", **scan)  # its Triton kernels are never called here
    try:
        import huggingface_hub  # noqa: F401  (Mamba2 mixes in PyTorchModelHubMixin)
    except ImportError:
        _install("huggingface_hub", PyTorchModelHubMixin=type("PyTorchModelHubMixin", (), {}))
    importlib.import_module("mamba_ssm.modules.mamba2")


def build_manifest(official_dir: Path) -> dict:
    sys.path.insert(0, str(official_dir))
    from hnet.models.config_hnet import AttnConfig, HNetConfig, SSMConfig
    from hnet.models.mixer_seq import HNetForCausalLM

    assert Path(sys.modules["hnet"].__file__).resolve().is_relative_to(official_dir.resolve())
    manifest = {}
    for path in sorted((official_dir / "configs").glob("*.json")):
        cfg = json.loads(path.read_text())  # same construction as the official generate.py
        attn_cfg, ssm_cfg = AttnConfig(**cfg.pop("attn_cfg")), SSMConfig(**cfg.pop("ssm_cfg"))
        config = HNetConfig(**cfg, attn_cfg=attn_cfg, ssm_cfg=ssm_cfg)
        with torch.device("meta"):  # shapes only: no memory for >1B parameters
            model = HNetForCausalLM(config, device="meta", dtype=torch.bfloat16)
        manifest[path.name] = {
            "num_params": sum(p.numel() for p in model.parameters()),
            "state_dict": {key: list(t.shape) for key, t in model.state_dict().items()},
        }
    return manifest


def write_manifest(manifest: dict, out: Path) -> None:
    """One state_dict entry per line, so diffs of the manifest stay readable."""
    lines = ["{"]
    for i, (name, entry) in enumerate(manifest.items()):
        lines.append(f'  {json.dumps(name)}: {{"num_params": {entry["num_params"]}, "state_dict": {{')
        items = list(entry["state_dict"].items())
        lines += [f"    {json.dumps(k)}: {json.dumps(v)}" + ("," if j < len(items) - 1 else "")
                  for j, (k, v) in enumerate(items)]
        lines.append("  }}" + ("," if i < len(manifest) - 1 else ""))
    lines.append("}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout/export of goombalab/hnet")
    parser.add_argument("--mamba", type=Path, help="export of state-spaces/mamba: use its real Mamba2 class")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    install_standins(args.mamba)
    manifest = build_manifest(args.official)
    write_manifest(manifest, args.out)
    assert json.loads(args.out.read_text()) == manifest
    for name, entry in manifest.items():
        print(f"{name}: {entry['num_params']:,} parameters, {len(entry['state_dict'])} state_dict entries")


if __name__ == "__main__":
    main()
