"""Pack variable-length examples end to end into one token budget, with ``cu_seqlens``.

No padding: a batch is the concatenation of its examples, and ``cu_seqlens`` ``(n+1,)`` int32
marks where each starts -- the :class:`hnet_seq.nn.packing.Packing` the core consumes.  An
example is a window ``[start, end)`` of a record's aligned arrays (see
``ModalityAdapter.example_arrays``): ``end - start - 1`` positions, position ``t`` reading
``inputs[start + t]`` and predicting ``targets[start + t + 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from hnet_seq.errors import UserError

from .regions import Interval, tile


@dataclass
class Example:
    id: str
    inputs: np.ndarray  # (L,) tokens or (L, F) frames
    targets: np.ndarray  # (L,) tokens, or (L, F) sample levels / features
    weights: np.ndarray  # (L,) float32
    start: int = 0
    end: int = 0
    strand: str = "+"


def make_example(arrays: dict[str, np.ndarray], window: Interval, rc=None) -> Example:
    """The example of ``window`` over ``arrays``; ``rc`` (a reverse-complement function) flips it."""
    s, e = window.start, window.end
    x, y, w = arrays["inputs"][s:e], arrays["targets"][s:e], arrays["weights"][s:e]
    if rc is not None:  # the minus strand of the same span, read 5'->3'
        x, y, w = rc(x), rc(y), w[::-1]
    return Example(window.contig, x[:-1], y[1:], w[1:], s, e, "-" if rc is not None else "+")


def plan_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group consecutive items greedily so that each group's total length is <= ``budget``."""
    batches, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if n > budget:
            raise UserError(f"an example of {n} positions exceeds the token budget {budget}")
        if used + n > budget and current:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        batches.append(current)
    return batches


def pack_examples(examples: Sequence[Example], input_key: str = "tokens") -> dict:
    """Concatenate examples into one packed batch.

    Returns ``{input_key: (T,) int64 | (T, F) float32, "targets": (T,) | (T, F) int64/float32,
    "loss_weights": (T,) float32, "cu_seqlens": (n+1,) int32, "max_seqlen": int, "ids": [str],
    "spans": [(start, end)], "strands": [str]}``.
    """
    lengths = np.array([len(e.inputs) for e in examples], np.int64)

    def cat(name):
        a = np.concatenate([getattr(e, name) for e in examples])
        return torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iub" else a.astype(np.float32))

    return {
        input_key: cat("inputs"),
        "targets": cat("targets"),
        "loss_weights": cat("weights").float(),
        "cu_seqlens": torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
        "max_seqlen": int(lengths.max()) if len(lengths) else 0,
        "ids": [e.id for e in examples],
        "spans": [(e.start, e.end) for e in examples],
        "strands": [e.strand for e in examples],
    }


def stream_batches(adapter, records: Iterable, window: int, token_budget: int) -> Iterator[dict]:
    """Pack records as they stream in (e.g. from shards), holding at most one batch in memory.

    Each record is cut into windows of ``window`` positions (spans of ``window + 1`` that share
    one position, so every target but the first is predicted once); no shuffling beyond the
    order of ``records``.
    """
    pending, used = [], 0
    for record in records:
        arrays = adapter.scored_arrays(record)
        for iv in tile([Interval(record.id, 0, len(arrays["inputs"]))], window + 1, stride=window):
            ex = make_example(arrays, iv)
            if used + len(ex.inputs) > token_budget and pending:
                yield pack_examples(pending, adapter.input_key)
                pending, used = [], 0
            pending.append(ex)
            used += len(ex.inputs)
    if pending:
        yield pack_examples(pending, adapter.input_key)
