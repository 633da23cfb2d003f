"""In-memory inference for notebooks: sequences in, NumPy arrays out, nothing written.

``model`` is an :class:`~hnet_seq.HNetLM` (e.g. from ``HNetLM.from_pretrained``; its
``modality_info`` names the adapter), an :class:`.InferenceModel` from :func:`.load`, or a
checkpoint path / Hub repo id.  ``sequences`` is one sequence, a list, a ``{id: sequence}``
dict, or :class:`~hnet_seq.modalities.Record` objects; a sequence is what the modality reads
(:meth:`ModalityAdapter.record_from`): a DNA string, text (``str``/``bytes``), or audio
samples at the model's sample rate.

* :func:`embed` — per sequence the pooled vector and, per chunking stage ``s``, every chunk's
  ``[start, end)`` input coordinates, boundary probability and vector: the same numbers the
  ``hnet-seq embed`` files hold (same tiling, pooling and ``rc_average`` rules, :mod:`.embed`).
* :func:`score` — per sequence the log-probability (nats) of every position given the ones
  before it, the total, and on request the full predictive distribution over the vocabulary
  at every position (DNA: columns ``A C G T N``), optionally averaged with the reverse
  complement's prediction, and the hidden states of chosen layers.

Layer names (:func:`layer_names`): ``embeddings`` (the level-0 inputs) and every stack and
block by its module path.  Stage ``s``'s H-Net is ``backbone`` followed by ``s`` times
``.main_network``; its ``.encoder``/``.decoder`` (and their ``.layers.N``) run at level ``s``, and
the innermost H-Net's own ``.main_network`` stack runs at the innermost level.  In a 2-stage
model: ``backbone.encoder`` (level 0), ``backbone.main_network.encoder`` (level 1),
``backbone.main_network.main_network.main_network.layers.0`` (level 2), ...,
``backbone.main_network.decoder`` (1), ``backbone.decoder`` (0).  A layer's states have shape
``(n_level, d_model[level])``: one row per input position at level 0, one per chunk of stage
``s`` at level ``s`` (the chunk starts of :func:`embed`).  Blocks give the fp32 residual
stream after the block; stacks give their normed output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from hnet_seq.errors import UserError
from hnet_seq.nn.isotropic import Block, Isotropic
from hnet_seq.nn.packing import Packing

from .embed import POOLS
from .embed_stitch import RecordJob
from .inputs import record_inputs
from .model import InferenceModel, default_batch_tokens, load
from .runner import Runner
from .tiling import batches_by_budget, default_overlap, plan_tiles


@dataclass
class Chunks:
    """The chunks of one stage of one sequence: ``start, end (n,)`` input coordinates, ``(n, D_s)`` vectors."""

    start: np.ndarray
    end: np.ndarray
    boundary_prob: np.ndarray
    vectors: np.ndarray | None


@dataclass
class Embedding:
    id: str
    vector: np.ndarray  # (D,) pooled at level ``stage``
    chunks: dict[int, Chunks] = field(default_factory=dict)  # stage s = 1..S (with chunks=True)


@dataclass
class Scores:
    id: str
    logprob: np.ndarray  # (n,) nats of position p given < p; NaN where nothing predicts it
    units_scored: int
    symbols: list[str] | None = None  # column names of ``distribution``
    distribution: np.ndarray | None = None  # (n, V) p(x_p = v | context); NaN rows where unscored
    hidden: dict[str, np.ndarray] = field(default_factory=dict)  # layer name -> (n_level, d_level)

    @property
    def log_likelihood(self) -> float:
        """Sum of ``logprob`` over scored positions (nats): ``hnet-seq score``'s column."""
        return float(np.nansum(self.logprob.astype(np.float64)))

    @property
    def bits_per_unit(self) -> float:
        return -self.log_likelihood / (max(self.units_scored, 1) * np.log(2.0))


# ---- inputs -------------------------------------------------------------------------------
def as_inference_model(model, device: str | None = None) -> InferenceModel:
    """An :class:`InferenceModel` for an ``HNetLM``, an ``InferenceModel`` or a checkpoint name."""
    if isinstance(model, InferenceModel):
        return model
    if isinstance(model, torch.nn.Module):
        from hnet_seq.modalities import get_adapter

        info = model.modality_info or {"name": model.config.modality, "options": {}}
        model.eval().requires_grad_(False)
        return InferenceModel(model, get_adapter(info["name"], **info["options"]), next(model.parameters()).device)
    return load(model, device=device)


def as_records(adapter, sequences) -> list:
    """Records for one sequence, a list (ids ``seq0, seq1, ...``) or an ``{id: sequence}`` dict."""
    from hnet_seq.modalities import Record

    if isinstance(sequences, (str, bytes, np.ndarray, Record)):
        sequences = [sequences]
    pairs = sequences.items() if isinstance(sequences, dict) else ((f"seq{i}", s) for i, s in enumerate(sequences))
    records = [s if isinstance(s, Record) else adapter.record_from(s, str(i)) for i, s in pairs]
    for r in records:
        if len(r) == 0:
            raise UserError(f"sequence '{r.id}' is empty")
    return records


# ---- embed --------------------------------------------------------------------------------
def embed(model, sequences, *, pool: str = "mean", stage: int | None = None, layer: str = "output",
          chunks: bool = True, rc_average: bool = False, window: int = 8192, overlap: int | None = None,
          batch_tokens: int | None = None) -> list[Embedding]:
    """Embeddings of ``sequences`` in memory (arguments as :func:`hnet_seq.inference.embed`)."""
    im = as_inference_model(model)
    if pool not in POOLS:
        raise UserError(f"pool={pool!r}: choose {', '.join(POOLS)}")
    if rc_average and not im.adapter.double_stranded:
        raise UserError(f"rc_average is for DNA models; this model reads {im.adapter.name}")
    stage = (1 if pool == "chunks" else 0) if stage is None else stage
    overlap = default_overlap(window, overlap)
    stages = im.num_stages if chunks else 0
    runner = Runner(im, layer=layer, chunk_vectors=chunks, probs=chunks and rc_average, pool_level=stage)
    dims = [None] + [im.level_dim(s, layer) for s in range(1, im.num_levels)]
    jobs = []
    for i, record in enumerate(as_records(im.adapter, sequences)):
        x, _, cmap = record_inputs(im.adapter, record)
        jobs.append(RecordJob(i, record, x, cmap, plan_tiles(int(x.shape[0]), window, overlap), stages, dims,
                               rc_average))
    found: dict[tuple[int, int], list] = {}

    def collect(job, s, starts, ends, probs, vecs) -> int:
        a, b = job.cmap.span(starts, ends)
        keep = b > a  # a chunk holding only BOS has no input span (as in the files)
        found.setdefault((job.index, s), []).append(
            (a[keep], b[keep], np.asarray(probs, np.float32)[keep], None if vecs is None else vecs[keep]))
        return int(keep.sum())

    items = (it for job in jobs for it in job.items())
    for group, results in runner.stream(batches_by_budget(items, batch_tokens or default_batch_tokens(im.device))):
        for res, item in zip(results, group):
            job, strand, tile = item.tag
            job.take(res, strand, tile)
            if chunks:
                job.flush(collect)
    return [Embedding(job.record.id, job.pooled(pool),
                      {s: _stack(found.get((job.index, s), [])) for s in range(1, stages + 1)}) for job in jobs]


def _stack(parts: list) -> Chunks:
    if not parts:
        return Chunks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), None)
    cols = list(zip(*parts))
    vecs = None if cols[3][0] is None else np.concatenate(cols[3])
    return Chunks(np.concatenate(cols[0]), np.concatenate(cols[1]), np.concatenate(cols[2]), vecs)


# ---- score --------------------------------------------------------------------------------
def layer_names(model) -> list[str]:
    """Names :func:`score` accepts in ``hidden=``: ``embeddings`` and every stack and block."""
    m = as_inference_model(model).model
    return ["embeddings"] + [n for n, mod in m.named_modules() if isinstance(mod, (Isotropic, Block))]


def score(model, sequences, *, distributions: bool = False, rc_average: bool = False,
          hidden: Sequence[str] = (), window: int = 8192, overlap: int | None = None) -> list[Scores]:
    """Per-position log-probabilities (and distributions, hidden states) of ``sequences`` in memory.

    Tiling as ``hnet-seq score`` (each position scored once, by the tile giving it at least
    ``overlap`` positions of context).  ``rc_average`` (DNA, with ``distributions``): each
    position's distribution is the mean of the forward prediction from the left and the
    complemented reverse-strand prediction from the right (where only one exists, that one);
    ``logprob`` stays the forward, causal one.  ``hidden`` needs sequences within one window.
    """
    im = as_inference_model(model)
    adapter = im.adapter
    if distributions and not hasattr(adapter, "table_size"):
        raise UserError(f"distributions are over a vocabulary; the {adapter.name} model predicts a density")
    if rc_average and not (distributions and adapter.double_stranded):
        raise UserError("rc_average averages DNA distributions: use it with distributions=True on a DNA model")
    unknown = sorted(set(hidden) - set(layer_names(im)))
    if unknown:
        raise UserError(f"hidden={unknown[0]!r}: no such layer (layer_names(model) lists them)")
    overlap = default_overlap(window, overlap)
    symbols = list(adapter.symbols) if distributions and getattr(adapter, "symbols", None) else None
    out = []
    for record in as_records(adapter, sequences):
        x, y, _ = record_inputs(adapter, record, scoring=True)
        if hidden and x.shape[0] > window:
            raise UserError(f"hidden states of '{record.id}' ({x.shape[0]} positions) need window >= its length")
        logprob, dist, states = _tiled(im, x, y, window, overlap, distributions, hidden)
        if rc_average:
            from hnet_seq.modalities.dna import COMPLEMENT

            _, rdist, _ = _tiled(im, *(adapter.reverse_complement(t) for t in (x, y)), window, overlap, True, ())
            rdist = rdist[::-1][:, COMPLEMENT[:rdist.shape[1]]]  # position p, forward-strand symbols
            dist = np.nanmean(np.stack([dist, rdist]), axis=0)
        scale = getattr(adapter, "units_per_position", 1) or 1
        out.append(Scores(record.id, logprob, int((~np.isnan(logprob)).sum()) * scale, symbols, dist, states))
    return out


@torch.no_grad()
def _tiled(im: InferenceModel, x, y, window: int, overlap: int, distributions: bool, hidden: Sequence[str]):
    """Forward every tile of one record; owned positions' logprob ``(n,)`` and distribution ``(n, V)``."""
    n = int(x.shape[0])
    logprob = np.full(n, np.nan, np.float32)
    vocab = getattr(im.adapter, "vocab_size", 0)
    dist = np.full((n, vocab), np.nan, np.float32) if distributions else None
    states: dict[str, np.ndarray] = {}
    modules = dict(im.model.named_modules())
    for tile in plan_tiles(n, window, overlap):
        xt = x[tile.start:tile.end].to(im.device)
        xt = xt.long() if xt.dtype in (torch.uint8, torch.int16, torch.int32) else xt
        handles = [modules[name].register_forward_hook(
            lambda m, args, o, name=name: states.__setitem__(name, o.float().cpu().numpy())) for name in hidden]
        try:
            with im.autocast():
                logits = im.model(xt, Packing.from_lengths([len(xt)], device=im.device)).logits
        finally:
            for h in handles:
                h.remove()
        nll = im.adapter.loss(logits[:-1], y[tile.start + 1:tile.end].to(im.device)).float().cpu().numpy()
        own = slice(max(tile.own_start, tile.start + 1), tile.end)  # position p is predicted by row p-1
        rows = slice(own.start - tile.start - 1, own.stop - tile.start - 1)
        logprob[own] = -nll[rows]
        if distributions:
            dist[own] = torch.softmax(logits[rows, :vocab].float(), -1).cpu().numpy()
    return logprob, dist, states


__all__ = ["Chunks", "Embedding", "Scores", "as_inference_model", "as_records", "embed", "layer_names", "score"]
