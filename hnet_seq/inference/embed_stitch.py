"""Tiles of one record (both strands with ``rc_average``) stitched into its chunk rows and pooled vector.

A :class:`RecordJob` receives each tile's :class:`~.runner.Runner` result as it finishes
(``take``), keeps per stage and strand the chunk starts known so far (forward coordinates;
the reverse strand's mapped back), and hands the chunks whose extent is known to a writer
(``flush``): the rules are those of :mod:`.embed`'s docstring.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from .inputs import CoordMap
from .tiling import Tile, WorkItem


class _Strand:
    """Chunk starts of one stage (forward coordinates) with probabilities and vectors."""

    def __init__(self, dim: int | None, with_candidates: bool):
        self.cuts: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.vecs: list[np.ndarray] = []
        self.cand_cuts: list[np.ndarray] = []
        self.cand_probs: list[np.ndarray] = []
        self.dim, self.with_candidates = dim, with_candidates
        self.known = 0  # every cut < known (and its vector) is here

    def add(self, cuts, probs, vecs, cand_cuts=None, cand_probs=None) -> None:
        self.cuts.append(np.asarray(cuts, np.int64))
        self.probs.append(np.asarray(probs, np.float32))
        if self.dim is not None:
            self.vecs.append(np.asarray(vecs, np.float32).reshape(-1, self.dim))
        if self.with_candidates and cand_cuts is not None:
            self.cand_cuts.append(np.asarray(cand_cuts, np.int64))
            self.cand_probs.append(np.asarray(cand_probs, np.float32))

    def compact(self) -> None:
        for name in ("cuts", "probs", "vecs", "cand_cuts", "cand_probs"):
            parts = getattr(self, name)
            if len(parts) > 1:
                setattr(self, name, [np.concatenate(parts)])

    def arrays(self):
        self.compact()
        cuts = self.cuts[0] if self.cuts else np.zeros(0, np.int64)
        probs = self.probs[0] if self.probs else np.zeros(0, np.float32)
        vecs = self.vecs[0] if self.vecs else None
        return cuts, probs, vecs

    def prob_at(self, c: np.ndarray) -> np.ndarray:
        """Boundary probability of this strand at cuts ``c`` (0 where it cannot cut)."""
        cuts, probs, _ = self.arrays()
        out = np.zeros(len(c), np.float32)
        if self.cand_cuts:
            cc, cp = self.cand_cuts[0], self.cand_probs[0]
            i = np.clip(np.searchsorted(cc, c), 0, max(len(cc) - 1, 0))
            hit = (len(cc) > 0) & (cc[i] == c) if len(cc) else np.zeros(len(c), bool)
            out[hit] = cp[i[hit]]
        i = np.clip(np.searchsorted(cuts, c), 0, max(len(cuts) - 1, 0))
        if len(cuts):
            hit = cuts[i] == c
            out[hit] = probs[i[hit]]
        return out

    def prune(self, start: int) -> None:
        """Forget what lies before the chunk active at ``start``."""
        cuts, probs, vecs = self.arrays()
        k = max(int(np.searchsorted(cuts, start, side="right")) - 1, 0)
        self.cuts, self.probs = [cuts[k:]], [probs[k:]]
        if vecs is not None:
            self.vecs = [vecs[k:]]
        if self.cand_cuts:
            j = int(np.searchsorted(self.cand_cuts[0], start))
            self.cand_cuts, self.cand_probs = [self.cand_cuts[0][j:]], [self.cand_probs[0][j:]]


class RecordJob:
    """Tiles of one record (and of its reverse complement), and what they have reported."""

    def __init__(self, index: int, record, inputs: torch.Tensor, cmap: CoordMap, tiles: list[Tile],
                 stages: int, dims: list[int | None], rc: bool):
        self.index, self.record, self.cmap, self.tiles = index, record, cmap, tiles
        self.n = int(inputs.shape[0])
        self.inputs = inputs
        self.rc = rc
        self.remaining = len(tiles) * (2 if rc else 1)
        strands = (0, 1) if rc else (0,)
        self.streams = {(st, s): _Strand(dims[s], rc) for st in strands for s in range(1, stages + 1)}
        self.emitted = {s: 0 for s in range(1, stages + 1)}
        self.pending_b = {s: (self.n, 1.0, None) for s in range(1, stages + 1)}  # rc: (y pos, prob)
        self.pool_sum = {st: None for st in strands}
        self.pool_count = {st: 0 for st in strands}
        self.pool_last = {st: None for st in strands}
        self.num_chunks = [0] * stages

    def items(self) -> Iterable[WorkItem]:
        from hnet_seq.modalities.dna import reverse_complement

        rc_inputs = reverse_complement(self.inputs) if self.rc else None
        count = len(self.tiles)
        for i, tile in enumerate(self.tiles):
            yield WorkItem(self.inputs[tile.start:tile.end], tile.own_start - tile.start, None, (self, 0, tile))
            if self.rc:
                t = self.tiles[count - 1 - i]  # reverse order: reverse strand advances along forward coordinates
                yield WorkItem(rc_inputs[t.start:t.end], t.own_start - t.start, None, (self, 1, t))

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def take(self, res, strand: int, tile: Tile) -> None:
        self.remaining -= 1
        n = self.n
        if res.pool_sum is not None:
            s = self.pool_sum[strand]
            self.pool_sum[strand] = res.pool_sum.copy() if s is None else s + res.pool_sum
            self.pool_count[strand] += res.pool_count
            if tile.index == tile.count - 1:
                self.pool_last[strand] = res.pool_last
        for k in range(len(res.bnd_pos)):
            s = k + 1
            stream = self.streams.get((strand, s))
            if stream is None:
                continue
            pos = res.bnd_pos[k] + tile.start
            prob = res.bnd_prob[k]
            vec = res.bnd_vec[k] if res.bnd_vec else None
            cand_pos = res.cand_pos[k] + tile.start if res.cand_pos else None
            cand_prob = res.cand_prob[k] if res.cand_prob else None
            if strand == 0:
                self.num_chunks[k] += len(pos)
                stream.add(pos, prob, vec, cand_pos, cand_prob)
                stream.known = tile.end
                continue
            # Reverse strand: y-boundary a (chunk [a, b) of the reverse complement) covers the
            # forward span [n-b, n-a); its forward cut is n-b with b's probability.
            b_pos, b_prob, _ = self.pending_b[s]
            order = np.argsort(-pos, kind="stable")
            ys, qs = pos[order], prob[order]
            prev = np.concatenate([[b_pos], ys[:-1]])
            prev_p = np.concatenate([[b_prob], qs[:-1]]).astype(np.float32)
            vecs = vec[order] if vec is not None else None
            if len(ys):
                stream.add(n - prev, prev_p, vecs,
                           None if cand_pos is None else (n - cand_pos)[::-1],
                           None if cand_prob is None else cand_prob[::-1])
                self.pending_b[s] = (int(ys[-1]), float(qs[-1]), None)
            elif cand_pos is not None:
                stream.add(np.zeros(0, np.int64), np.zeros(0, np.float32),
                           np.zeros((0, stream.dim or 0), np.float32) if stream.dim else None,
                           (n - cand_pos)[::-1], cand_prob[::-1])
            stream.known = n - self.pending_b[s][0]

    def flush(self, write_chunk) -> int:
        """Write every chunk whose extent is known; returns rows written."""
        rows = 0
        for s, e in self.emitted.items():
            fwd = self.streams[(0, s)]
            rev = self.streams.get((1, s))
            m = fwd.known if rev is None else min(fwd.known, rev.known)
            fc, fp, fv = fwd.arrays()
            if rev is None:
                cuts = fc[(fc >= e) & (fc < m)]
            else:
                rc_, _, _ = rev.arrays()
                cuts = np.union1d(fc[(fc >= e) & (fc < m)], rc_[(rc_ >= e) & (rc_ < m)])
            if not len(cuts):
                continue
            final = m >= self.n
            ends = np.append(cuts[1:], self.n) if final else cuts[1:]
            starts = cuts[:len(ends)]
            if not len(starts):
                continue
            i_f = np.searchsorted(fc, starts, side="right") - 1
            if rev is None:
                probs = fp[i_f]
                vecs = fv[i_f] if fv is not None else None
            else:
                rcuts, _, rv = rev.arrays()
                i_r = np.searchsorted(rcuts, starts, side="right") - 1
                probs = (fwd.prob_at(starts) + rev.prob_at(starts)) / 2
                probs[starts == 0] = 1.0
                vecs = (fv[i_f] + rv[i_r]) / 2 if fv is not None else None
            rows += write_chunk(self, s, starts, ends, probs, vecs)
            self.emitted[s] = int(ends[-1]) if final else int(cuts[len(ends)])
            fwd.prune(self.emitted[s])
            if rev is not None:
                rev.prune(self.emitted[s])
        return rows

    def pooled(self, pool: str) -> np.ndarray:
        vecs = []
        for st in self.pool_sum:
            if pool == "last":
                vecs.append(self.pool_last[st])
            else:
                vecs.append(self.pool_sum[st] / max(self.pool_count[st], 1))
        return np.mean(vecs, axis=0).astype(np.float32)
