"""Run work items on the model: pack tiles into one batch, capture per-level states, split results per tile.

Packing.  Tiles (of any number of records) are laid end to end up to ``batch_tokens``
positions and run as one packed batch (``cu_seqlens``); results are split back per tile.

Capture.  Forward hooks collect, per hierarchy level ``s`` (0 = input positions, ``s >= 1`` =
the chunks of chunking stage ``s``), either the level's output states (``layer="output"``: the
full-width output of that level's decoder, or of its main network at the innermost level) or
its input states (``layer="input"``: embeddings at level 0; at ``s >= 1`` the encoder state at
the chunk's first position, as fed to the inner network).  Reductions that only need a few
numbers per tile (pooled sums, last vector) run on the device; only owned positions come back.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from hnet_seq.errors import UserError
from hnet_seq.nn.packing import Packing

from .model import InferenceModel, level_modules
from .tiling import WorkItem


LAYERS = ("output", "input")


@dataclass
class TileResult:
    """What one tile reports, restricted to its owned positions (tile-local coordinates)."""

    tag: Any
    n: int
    own_start: int
    # per chunking stage s = 1..S (index s-1): owned chunk starts, their probabilities, vectors
    bnd_pos: list[np.ndarray] = field(default_factory=list)
    bnd_prob: list[np.ndarray] = field(default_factory=list)
    bnd_vec: list[np.ndarray | None] = field(default_factory=list)
    # per stage: owned candidate positions (positions of level s-1) and stage-s boundary probability
    cand_pos: list[np.ndarray] = field(default_factory=list)
    cand_prob: list[np.ndarray] = field(default_factory=list)
    # pooling at one level: sum and count over owned positions, and the tile's last vector
    pool_sum: np.ndarray | None = None
    pool_count: int = 0
    pool_last: np.ndarray | None = None
    # scoring: NLL (nats) of owned positions p (predicted from < p); NaN where nothing predicts
    nll: np.ndarray | None = None


class Runner:
    """Pack work items, run the model once per batch, and split what was captured per item.

    ``chunk_vectors``: return the (owned) vector of every chunk at every stage;
    ``probs``: return stage boundary probabilities at candidate positions;
    ``pool_level``: level whose owned vectors are summed (and last vector kept) per tile; positions
    whose input the adapter calls unscorable (DNA: N) are not summed (at stage ``s >= 1``: chunks
    that start at one);
    ``scores``: compute per-position NLL with the adapter's loss (needs ``targets``); NaN where the
    target is unscorable (``adapter.unscorable``: DNA N), exactly as for a tile's first position.
    """

    def __init__(self, im: InferenceModel, *, layer: str = "output", chunk_vectors: bool = False,
                 probs: bool = False, pool_level: int | None = None, scores: bool = False):
        if layer not in LAYERS:
            raise UserError(f"layer={layer}: choose {' or '.join(LAYERS)}", params=("layer",))
        if pool_level is not None and not 0 <= pool_level < im.num_levels:
            raise UserError(f"stage={pool_level}: this model has stages 0..{im.num_levels - 1} "
                            f"(0 = input positions, s = chunks of the s-th chunking level)", params=("stage",))
        self.im, self.layer = im, layer
        self.chunk_vectors, self.probs, self.pool_level, self.scores = chunk_vectors, probs, pool_level, scores
        levels = set(range(1, im.num_levels)) if chunk_vectors else set()
        if pool_level is not None:
            levels.add(pool_level)
        self.levels = levels
        self.batches = 0
        self.positions = 0  # positions run, context included

    @contextlib.contextmanager
    def _capture(self) -> Iterator[dict]:
        store: dict[int, torch.Tensor] = {}
        handles = []
        mods = level_modules(self.im.model)
        for s in self.levels:
            if self.layer == "output":
                h = mods[s]
                target = h.main_network if h.is_innermost else h.decoder
                handles.append(target.register_forward_hook(
                    lambda m, args, out, s=s: store.__setitem__(s, out)))
            elif s == 0:
                handles.append(self.im.model.embeddings.register_forward_hook(
                    lambda m, args, out: store.__setitem__(0, out)))
            else:
                handles.append(mods[s].register_forward_pre_hook(
                    lambda m, args, s=s: store.__setitem__(s, args[0])))
        try:
            yield store
        finally:
            for h in handles:
                h.remove()

    def stream(self, groups: Iterable[Sequence[WorkItem]]) -> Iterator[tuple[Sequence[WorkItem], list[TileResult]]]:
        """``(group, results)`` for every group, in order, with the next group already launched.

        The forward pass of group ``i+1`` and the copies of its results into pinned host memory
        are queued before group ``i``'s results are handed over, so on CUDA the GPU computes
        while the caller splits, reduces and writes what came back (nothing here waits for the
        GPU except :meth:`_collect`).  Results do not depend on this overlap.
        """
        ahead = None
        for group in groups:
            if not group:
                continue
            launched = self._launch(group)
            if ahead is not None:
                yield ahead.items, self._collect(ahead)
            ahead = launched
        if ahead is not None:
            yield ahead.items, self._collect(ahead)

    @torch.no_grad()
    def _launch(self, items: Sequence[WorkItem]) -> "_InFlight":
        """Queue the forward pass of one packed batch and the copies of everything it reports."""
        im, dev = self.im, self.im.device
        n_items = len(items)
        lengths = np.array([len(it) for it in items], np.int64)
        cu = np.concatenate([[0], np.cumsum(lengths)])
        # Level-0 tile-local positions and tile ids, built on the host (no device round trip).
        seq0 = np.repeat(np.arange(n_items), lengths)
        pos0 = np.arange(int(cu[-1])) - cu[seq0]
        own = np.array([it.own_start for it in items], np.int64)
        host_inputs = torch.cat([it.inputs for it in items])
        inputs = _to_device(host_inputs, dev)
        if inputs.dtype in (torch.uint8, torch.int16, torch.int32):
            inputs = inputs.long()
        packing = Packing(_to_device(torch.from_numpy(cu.astype(np.int32)), dev), int(lengths.max()),
                          int(cu[-1]))  # total from the host: no read back from the device
        with self._capture() as store, im.autocast():
            x = im.model.embeddings(inputs)
            hidden, routing = im.model.backbone(x, packing)
            logits = im.model.lm_head(hidden) if self.scores else None
        host: dict[str, Any] = {
            "mask": [_to_host(r.boundary_mask) for r in routing],
            "prob": [_to_host(r.boundary_prob.float()) for r in routing]}
        if self.chunk_vectors:
            host["vec"] = {s: _to_host(store[s].float()) for s in range(1, len(routing) + 1)}
        if self.pool_level is not None:
            # Unscorable inputs (DNA: N) are left out of the pool, as they are out of every score.
            pooled = pos0 >= own[seq0]
            unknown = im.adapter.unscorable(host_inputs)
            if unknown is not None:
                pooled &= ~unknown
            host["pool"] = self._pool(store[self.pool_level].float(), routing, seq0, pooled, n_items)
        if self.scores:
            host_targets = torch.cat([it.targets for it in items])
            host["unscored"] = im.adapter.unscorable(host_targets)  # (T,) bool at target positions, or None
            targets = _to_device(host_targets, dev)
            # nll[t] is the loss of predicting t+1; position p's is nll[p-1] (rolled into place on the host)
            host["nll"] = _to_host(im.adapter.loss(logits, torch.roll(targets, -1, 0)).float())
        event = None
        if dev.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        self.batches += 1
        self.positions += int(cu[-1])
        return _InFlight(items, host, event, cu, seq0, pos0, own)

    def _pool(self, v: torch.Tensor, routing, seq0: np.ndarray, owned0: np.ndarray, n_items: int) -> tuple:
        """Per tile on the device: sum and count of owned level-``pool_level`` vectors, and the last one.

        Rows of other tiles' context go to a spare row ``n_items`` (no data-dependent shapes, so
        no host synchronisation); owned rows are added in the same order as a masked sum.
        """
        dev = v.device
        seq = _to_device(torch.from_numpy(seq0), dev)
        owned = _to_device(torch.from_numpy(owned0), dev)
        for k in range(self.pool_level):  # the rows of level k+1 are the chunk starts of level k
            starts = routing[k].chunk_starts  # already built (and cached) by the forward's chunking
            seq, owned = seq.index_select(0, starts), owned.index_select(0, starts)
        ones = torch.ones_like(seq)
        into = torch.where(owned, seq, n_items)
        sums = torch.zeros(n_items + 1, v.shape[-1], device=dev).index_add_(0, into, v)[:n_items]
        counts = torch.zeros(n_items + 1, device=dev, dtype=seq.dtype).index_add_(0, into, ones)[:n_items]
        level_counts = torch.zeros(n_items, device=dev, dtype=seq.dtype).index_add_(0, seq, ones)
        last = v[torch.cumsum(level_counts, 0) - 1]
        return _to_host(sums), _to_host(counts), _to_host(last)

    def _collect(self, job: "_InFlight") -> list[TileResult]:
        """Wait for a launched batch and split what came back per tile (owned positions only)."""
        if job.event is not None:
            job.event.synchronize()
        host = job.host
        n_items = len(job.items)
        results = [TileResult(it.tag, len(it), it.own_start) for it in job.items]
        pos, seq = [job.pos0], [job.seq0]
        masks = [m.numpy() for m in host["mask"]]
        for m in masks:
            pos.append(pos[-1][m])
            seq.append(seq[-1][m])
        owned = [p >= job.own[q] for p, q in zip(pos, seq)]

        def split(a: np.ndarray, q: np.ndarray) -> list[np.ndarray]:
            return np.split(a, np.cumsum(np.bincount(q, minlength=n_items))[:-1])

        for s in range(1, len(pos)):
            keep, q = owned[s], seq[s][owned[s]]
            prob = host["prob"][s - 1].numpy()
            for res, a, b in zip(results, split(pos[s][keep], q), split(prob[masks[s - 1]][keep], q)):
                res.bnd_pos.append(a)
                res.bnd_prob.append(b)
            if self.chunk_vectors:
                for res, a in zip(results, split(host["vec"][s].numpy()[keep], q)):
                    res.bnd_vec.append(a)
            if self.probs:
                keep_c, qc = owned[s - 1], seq[s - 1][owned[s - 1]]
                for res, a, b in zip(results, split(pos[s - 1][keep_c], qc), split(prob[keep_c], qc)):
                    res.cand_pos.append(a)
                    res.cand_prob.append(b)
        if self.pool_level is not None:
            sums, counts, last = (t.numpy() for t in host["pool"])
            for i, res in enumerate(results):
                res.pool_sum, res.pool_count, res.pool_last = sums[i], int(counts[i]), last[i]
        if self.scores:
            nll_at = np.roll(host["nll"].numpy(), 1)
            starts = job.cu[:-1][np.diff(job.cu) > 0]
            nll_at[starts] = np.nan  # the first position of a tile has nothing before it
            if host["unscored"] is not None:
                nll_at[host["unscored"]] = np.nan  # an unscorable target (DNA: N) is never scored
            for res, a in zip(results, split(nll_at[owned[0]], seq[0][owned[0]])):
                res.nll = a
        return results


@dataclass
class _InFlight:
    """A launched batch: its items, host-side result buffers (valid once ``event`` has completed)
    and its packing on the host (``cu_seqlens``, tile id and tile-local position per position)."""

    items: Sequence[WorkItem]
    host: dict
    event: Any
    cu: np.ndarray
    seq0: np.ndarray
    pos0: np.ndarray
    own: np.ndarray


def _to_device(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Host tensor → ``dev``; on CUDA through pinned memory, without waiting for the copy."""
    if dev.type != "cuda":
        return t.to(dev)
    return t.pin_memory().to(dev, non_blocking=True)


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """Device tensor → a pinned host copy that is valid once the stream reaches this point."""
    if t.device.type != "cuda":
        return t
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out
