"""The modality adapter interface and its registry.

The H-Net core maps packed ``(T, D) -> (T, D)`` and knows nothing of DNA, text or audio.  An
adapter is everything modality-specific around it:

    files --read_records--> Record --encode--> model inputs (T,) tokens | (T, F) frames
    model inputs --make_embedding(d)--> (T, d)      (T, d) --make_head(d)--> (T, P) params
    (T, P) params + targets --loss--> (T,) NLL in nats      decode: inputs -> natural form

Adding a modality is one new module with a subclass decorated ``@register_adapter("name")``
(built-in modules are imported lazily by :func:`get_adapter`, so `import hnet_seq.modalities`
does not pull in pysam or torchaudio).
"""
from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hnet_seq.data.record import Record  # noqa: F401  (re-exported: adapters read and encode Records)
from hnet_seq.errors import UserError

LN2 = math.log(2.0)  # nats per bit: the one definition (training and inference report bits)


class ModalityAdapter(ABC):
    """Everything between files and the modality-agnostic core; one subclass per modality."""

    name: str = ""
    unit_name: str = "unit"  # what one unit of ``bits_per_unit`` is: "base", "byte", "sample"
    input_key: str = "tokens"  # key of the model input in packed batches: "tokens" or "frames"
    data_key: str = "tokens"  # name of ``Record.data`` in shards (``<key>.tokens.npy``)
    units_per_position: int = 1  # units predicted at one position (raw audio: samples per frame)
    # An input-only token (DNA: N, which IUPAC codes also become): fed to the model but never a
    # scored target -- weight 0 in training and held-out loss, NaN NLL in score/score-variants,
    # left out of pooled embeddings -- and windowing limits how much of a window it may fill.
    unknown_token: int | None = None
    unknown_name: str = ""  # how outputs name it ("N")
    file_suffixes: tuple[str, ...] = ()  # files picked up when an input is a directory
    record_fields: tuple[str, ...] = ()  # Record.meta keys every output carries as columns (text: lang)
    column_names: dict[str, str] = {}  # output names of the generic columns seq_id, chrom (text: doc, source)
    units_per_second: float | None = None  # coordinates per second (audio): outputs add seconds
    sample_rate: int | None = None
    default_data: str | None = None  # file or folder in hnet_seq/resources a run reads when given no data
    # What callers ask of a modality, instead of its name:
    double_stranded: bool = False  # a reverse complement exists (rc_average, '-' BED intervals)
    genomic: bool = False  # records come from an indexed reference (fetch): VCF variants, saturation
    tokens_are_data: bool = False  # Record.data already holds the model's tokens (no encode step)
    eos_token: int | None = None  # the token that ends a generated sequence

    # ---- reading -------------------------------------------------------------------------
    @abstractmethod
    def read_records(self, paths: Iterable[str | Path]) -> Iterator[Record]:
        """Stream records from files or directories (in a deterministic order)."""

    def expand_inputs(self, paths: Iterable[str | Path]) -> list[Path]:
        """Files behind ``paths``: directories are walked recursively (sorted, hidden skipped)."""
        out: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                               and (not self.file_suffixes or _has_suffix(f, self.file_suffixes)))
                if not found:
                    raise UserError(f"{p}: directory holds no {self.name} files "
                                    f"({', '.join(self.file_suffixes)})")
                out.extend(found)
            elif p.exists():
                out.append(p)
            else:
                raise UserError(f"{p}: no such file or directory")
        return out

    def record_from(self, value: Any, id: str) -> Record:
        """A Record of an in-memory sequence in the modality's natural form (the notebook API)."""
        return Record(id, np.asarray(value), {})

    def text_record(self, text: str | bytes, id: str = "sequence", where: str = "text") -> Record:
        """A Record of a sequence typed as text (a prompt, an inline sequence); ``where`` names
        it in errors.  Modalities without a text form refuse."""
        raise UserError(f"{where}: {self.name} input must come from files")

    # ---- tensors -------------------------------------------------------------------------
    def prompt_tokens(self, prompt: str | bytes) -> np.ndarray:
        """``(L,) int64`` model tokens that a generation continues."""
        return self.encode(self.text_record(prompt, "prompt", where="prompt")).numpy()

    def text_of(self, tokens: np.ndarray) -> str:
        """Generated tokens as text."""
        raise UserError(f"{self.name} tokens have no text form")

    @abstractmethod
    def encode(self, record: Record) -> torch.Tensor:
        """Model inputs of a whole record: ``(L,) int64`` tokens or ``(N, F) float32`` frames."""

    @abstractmethod
    def decode(self, encoded: torch.Tensor | np.ndarray, meta: dict | None = None) -> Any:
        """Inverse of :meth:`encode` (given the record's ``meta``) to the natural form."""

    def example_arrays(self, record: Record) -> dict[str, np.ndarray]:
        """Aligned per-position arrays for training: ``inputs``, ``targets``, ``weights``.

        Position ``t`` of a window predicts ``targets[t + 1]`` from ``inputs[: t + 1]``; the
        windowing code does the shift.  Default: targets are the inputs, weight 1.
        """
        x = self.encode(record).numpy()
        return {"inputs": x, "targets": x, "weights": np.ones(len(x), np.float32)}

    def unscorable(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray | None:
        """``(L,) bool``, True where a token is :attr:`unknown_token`; None when every token is scorable."""
        if self.unknown_token is None:
            return None
        t = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
        return t == self.unknown_token if t.ndim == 1 else None

    def scored_arrays(self, record: Record) -> dict[str, np.ndarray]:
        """:meth:`example_arrays` with weight 0 on unscorable targets: what training and scoring use."""
        arrays = self.example_arrays(record)
        unscored = self.unscorable(arrays["targets"])
        if unscored is not None and unscored.any():
            arrays = {**arrays, "weights": np.where(unscored, np.float32(0), arrays["weights"]).astype(np.float32)}
        return arrays

    # ---- model parts ---------------------------------------------------------------------
    @abstractmethod
    def make_embedding(self, d_model: int) -> nn.Module:
        """Module mapping model inputs to ``(T, d_model)``."""

    @abstractmethod
    def make_head(self, d_model: int) -> nn.Module:
        """Module mapping ``(T, d_model)`` to distribution parameters ``(T, P)``."""

    @abstractmethod
    def loss(self, head_out: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position negative log-likelihood in nats ``(T,)`` (times ``weights`` if given)."""

    @staticmethod
    def bits_per_unit(nll_nats: torch.Tensor | float, units: int) -> float:
        """Total NLL in nats over ``units`` bases/bytes/samples -> bits per unit."""
        total = float(nll_nats.detach().sum()) if isinstance(nll_nats, torch.Tensor) else float(nll_nats)
        return total / (max(units, 1) * LN2)


class DiscreteAdapter(ModalityAdapter):
    """A vocabulary of ``vocab_size`` symbols in a table of ``table_size`` rows (>= vocab_size).

    Embedding ``nn.Embedding(table, d)`` and head ``nn.Linear(d, table, bias=False)``: the
    parameter names of official H-Net checkpoints (``embeddings.weight``, ``lm_head.weight``).
    """

    vocab_size: int = 256
    table_size: int = 256

    def make_embedding(self, d_model: int) -> nn.Module:
        return nn.Embedding(self.table_size, d_model)

    def make_head(self, d_model: int) -> nn.Module:
        return nn.Linear(d_model, self.table_size, bias=False)

    def loss(self, head_out, targets, weights=None):
        """Cross-entropy ``(T, table)`` logits vs ``(T,)`` targets -> ``(T,)`` nats."""
        # Padding rows of the table are not symbols: the distribution is over the vocabulary only.
        nll = F.cross_entropy(head_out[..., : self.vocab_size].float(), targets.long(), reduction="none")
        return nll if weights is None else nll * weights


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


# ---- registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, type[ModalityAdapter]] = {}
# Built-ins: name -> module under hnet_seq.modalities, imported on first use.
_BUILTIN = {"dna": "dna", "bytes": "text", "audio": "audio"}


def register_adapter(name: str):
    """Class decorator: make ``get_adapter(name)`` build this adapter."""

    def decorate(cls: type[ModalityAdapter]) -> type[ModalityAdapter]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_adapters() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def get_adapter(name: str, **options) -> ModalityAdapter:
    """Build the adapter registered as ``name`` ("dna", "bytes", "audio") with ``options``."""
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(f"hnet_seq.modalities.{_BUILTIN[name]}")
    if name not in _REGISTRY:
        raise UserError(f"unknown modality '{name}' (choose from {', '.join(available_adapters())})")
    try:
        return _REGISTRY[name](**options)
    except TypeError as e:  # an unknown keyword: name it on one line
        raise UserError(f"modality '{name}': {e}") from None
