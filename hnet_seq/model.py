"""The whole model: input embedding → H-Net backbone → output head.

Attribute names equal the official ``HNetForCausalLM`` (``embeddings``, ``backbone``, ``lm_head``)
so released checkpoints load with ``strict=True``.  For discrete vocabularies (bytes, DNA) the
defaults are a lookup table and a linear head; a modality adapter may pass its own modules
(e.g. a frame projection and a mixture-density head for audio).

Hugging Face habits come from :class:`huggingface_hub.ModelHubMixin`: ``save_pretrained(dir)``
writes our checkpoint layout (``model.safetensors``, ``config.json``, ``modality.json`` and a
model card), ``push_to_hub(repo_id)`` uploads it, and ``HNetLM.from_pretrained(name)`` loads a
local directory, an official ``.pt`` or a Hub repo id (see :mod:`hnet_seq.hub`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from .config import HNetConfig
from .nn.hnet import HNet, HNetState, map_state
from .nn.packing import Packing, pack, unpack
from .nn.routing import RoutingOutput


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (T, out) packed, or (B, L, out) from forward_padded
    hidden: torch.Tensor  # (T, d_model[0]) backbone output before the head
    routing: list[RoutingOutput]  # one per chunking stage, outermost first


class HNetLM(nn.Module, ModelHubMixin, library_name="hnet-seq", tags=["h-net", "dynamic-chunking"],
             repo_url="https://github.com/goombalab/hnet", paper_url="https://arxiv.org/abs/2507.07955"):
    # {"name": ..., "options": {...}}: the modality adapter the model was built with
    # (hnet_seq.checkpoint.build_model sets it); save_pretrained writes it as modality.json.
    modality_info: dict | None = None

    def __init__(self, cfg: HNetConfig, embeddings: nn.Module | None = None, lm_head: nn.Module | None = None,
                 device=None, dtype=None):
        super().__init__()
        self.config = cfg
        d = cfg.d_model[0]
        self.embeddings = embeddings or nn.Embedding(cfg.vocab_size, d, device=device, dtype=dtype)
        self.backbone = HNet(cfg, 0, device=device, dtype=dtype)
        self.lm_head = lm_head or nn.Linear(d, cfg.vocab_size, bias=False, device=device, dtype=dtype)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embeddings.weight

    def init_weights(self, std: float = 0.02) -> None:
        """The official initialisation: N(0, std) linears, output projections scaled by depth.

        ``out_proj``/``fc2`` weights get ``std / sqrt(n)`` with ``n`` the residual writes of every
        stack enclosing them; routing projections (identity) and ``residual_proj`` (zero) are kept.
        """
        if isinstance(self.embeddings, nn.Embedding):
            nn.init.normal_(self.embeddings.weight, std=1.0)
        if isinstance(self.lm_head, nn.Linear) and not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=std)

        def init_stack(stack: nn.Module, n_residuals: int) -> None:
            for name, module in stack.named_modules():
                if isinstance(module, nn.Linear) and not getattr(module.weight, "_no_reinit", False):
                    scaled = "out_proj" in name or "fc2" in name
                    nn.init.normal_(module.weight, std=std / n_residuals ** 0.5 if scaled else std)

        n_residuals, stage = 0, self.backbone
        while not stage.is_innermost:
            n_residuals += stage.encoder.height + stage.decoder.height
            init_stack(stage.encoder, n_residuals)
            init_stack(stage.decoder, n_residuals)
            stage = stage.main_network
        init_stack(stage.main_network, n_residuals + stage.main_network.height)

    def forward(self, inputs: torch.Tensor, packing: Packing) -> ModelOutput:
        """Packed inputs ``(T,)`` tokens or ``(T, F)`` frames → logits ``(T, out)``."""
        hidden, routing = self.backbone(self.embeddings(inputs), packing)
        return ModelOutput(self.lm_head(hidden), hidden, routing)

    def forward_padded(self, inputs: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        """Padded ``(B, L[, F])`` + left-aligned ``mask (B, L)`` → logits ``(B, L, out)``."""
        packed, packing = pack(inputs, mask)
        out = self(packed, packing)
        return ModelOutput(unpack(out.logits, mask), unpack(out.hidden, mask), out.routing)

    def new_state(self, batch_size: int, max_len: int, device=None, dtype=None) -> HNetState:
        """Decoding state for ``batch_size`` sequences of up to ``max_len`` positions."""
        device = device or next(self.parameters()).device
        return self.backbone.new_state(batch_size, max_len, device, dtype)

    def step(self, inputs: torch.Tensor, state: HNetState, rows: torch.Tensor | None = None):
        """Feed one position per row (``inputs (b,)`` or ``(b, F)``) → (logits ``(b, out)``, routing)."""
        if rows is None:
            rows = torch.arange(inputs.shape[0], device=inputs.device)
        hidden, routing = self.backbone.step(self.embeddings(inputs), state, rows)
        return self.lm_head(hidden), routing

    def prefill(self, inputs: torch.Tensor, state: HNetState, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Feed a block of positions per row, in parallel, continuing ``state`` (updated in place).

        ``inputs (B, L)`` or ``(B, L, F)``; ``lengths (B,)``: valid positions per row (left-aligned,
        default all ``L``) → logits ``(B, L, out)`` (padding positions hold garbage).  Equals the
        full forward of everything fed so far, position for position; ``step`` is the one-position case.
        """
        if lengths is None:
            lengths = torch.full((inputs.shape[0],), inputs.shape[1], device=inputs.device, dtype=torch.long)
        return self.lm_head(self.backbone.prefill(self.embeddings(inputs), lengths.long(), state))

    @staticmethod
    def select_state(state: HNetState, index: torch.Tensor) -> HNetState:
        """A new state whose row ``i`` is a copy of ``state``'s row ``index[i]`` (copy, expand, gather)."""
        return map_state(state, lambda t: t.index_select(0, index))

    # ---- Hugging Face Hub (ModelHubMixin) --------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        from .checkpoint import save_checkpoint

        info = self.modality_info or {"name": self.config.modality, "options": {}}
        save_checkpoint(save_directory, self, info["name"], info["options"])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, config: str | Path | None = None,
                        device="cpu", modality: str | None = None, revision: str | None = None,
                        cache_dir: str | Path | None = None, force_download: bool = False,
                        local_files_only: bool = False, token: str | bool | None = None) -> "HNetLM":
        """Load from a checkpoint directory, an official ``.pt`` or a Hub repo id, in eval mode.

        ``config`` (a path or packaged name) is needed only for an official ``.pt`` whose name is
        not a packaged config's.  The returned model's ``modality_info`` names its adapter.
        """
        # ModelHubMixin.from_pretrained first probes the repo for config.json; the official
        # cartesia-ai repos hold only a .pt, and under HF_HUB_OFFLINE that probe raises instead
        # of being skipped.  Our loader reads config.json itself, so go straight to the hook.
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, config=config,
                                    device=device, modality=modality)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         config=None, device="cpu", modality=None) -> "HNetLM":
        from .checkpoint import load_model
        from .hub import resolve_model

        path = resolve_model(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                             local_files_only=local_files_only, token=token)
        model, _ = load_model(path, config, device=device, modality=modality)
        return model
