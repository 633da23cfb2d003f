"""Variant scoring that shares the reference pass (``score_variants(share_prefix=True)``).

The model is causal, so a reference window ``R`` and an alternate window ``A`` give the same
logits at every position of their longest common prefix ``R[:o] == A[:o]``.  Instead of two
full forward passes, the reference is fed once through :meth:`HNetLM.prefill` in pieces that
end at every split ``o`` of its alleles; the decoding state at ``o`` (conv, SSM, routing,
dechunk EMA and attention KV of every stage) is copied for each ALT and only the suffix
``A[o:]`` is run from it.  The reverse strand is the same computation on the reverse
complements, whose shared prefix is the part after the variant in forward coordinates.

* Exact: log-probabilities equal those of the full forward pass of each window (fp32:
  within ~1e-5; bf16: within the batch-to-batch noise the full passes have too).  Any ALT
  works (SNVs, MNVs, insertions, deletions): the split is the longest common prefix, so an
  indel's suffix simply has another length.
* Chains: the states at a window's splits ``o_1 < o_2 < ...`` are built in rounds.  Round 0
  runs ``R[0:o_1]``; each later round takes up to :data:`MAX_GROUP` further splits and runs,
  from the last state, one row ``R[base:o_j]`` per split in parallel (``G²/2`` positions for
  ``G`` consecutive splits: saturation mutagenesis pays ~32 positions per state).
* Suffixes of all ALTs of a round (and the reference's own tail after its last split) are
  packed into batches of at most ``budget`` padded positions.

:func:`shared_logprobs` is the engine (token arrays in, per-position log-probabilities out);
``score_variants(share_prefix=True)`` and :mod:`.saturation` call it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .model import InferenceModel

MAX_GROUP = 64  # splits advanced in parallel per round (rows of one prefill)


def shared_by_default(device: torch.device) -> bool:
    """Whether ``share_prefix=None`` shares the reference pass on ``device``: on CPU, yes; on CUDA,
    no. There it equals full recomputation too (the ``gpu`` tests passed on an H200), but it ran
    slower: 0.27-0.30x full for isolated SNVs and 0.81-1.04x for saturation mutagenesis (H200,
    2026-12-03), bound by state copies and ~2.8x the kernel launches of the packed full passes."""
    return torch.device(device).type == "cpu"


@dataclass
class _Window:
    """One reference window: its splits (sorted), per split the ALTs that branch there, and what
    the chain computed: per-position NLL pieces and the logits of each split's last prefix position."""

    tokens: np.ndarray
    splits: list[int] = field(default_factory=list)
    alts: dict[int, list[int]] = field(default_factory=dict)  # split -> indices into the ALT list
    pieces: list[np.ndarray] = field(default_factory=list)  # NLL of the chain, in order, then of R[o_K:]
    last: dict[int, np.ndarray] = field(default_factory=dict)  # split o -> logits (V,) at position o - 1

    @property
    def nll(self) -> np.ndarray:
        """``(len(tokens),)``: at ``i``, −log p(tokens[i+1]) from position ``i`` (the last one unused)."""
        return np.concatenate(self.pieces)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def next_tokens(tokens: np.ndarray, a: int, b: int) -> np.ndarray:
    """The targets of positions ``a .. b-1``: ``tokens[a+1 : b+1]``, a 0 after the end (unused)."""
    out = np.zeros(b - a, np.int64)
    t = tokens[a + 1:b + 1]
    out[:len(t)] = t
    return out


def _groups(splits: list[int], group_tokens: int) -> list[tuple[int, list[int]]]:
    """``[(base, [o_j, ...]), ...]``: round 0 is ``(0, [o_1])``, later rounds take consecutive
    splits while ``rows * (o_last - base)`` (the padded positions of the round) fits."""
    rounds = [(0, splits[:1])]
    rest = splits[1:]
    while rest:
        base = rounds[-1][1][-1]
        k = 1
        while k < min(len(rest), MAX_GROUP) and (k + 1) * (rest[k] - base) <= group_tokens:
            k += 1
        rounds.append((base, rest[:k]))
        rest = rest[k:]
    return rounds


class _Engine:
    def __init__(self, im: InferenceModel, budget: int):
        self.im, self.model, self.budget = im, im.model, budget
        self.device = im.device
        self.positions = 0  # padded positions run (what the bench compares)

    @torch.no_grad()
    def prefill(self, rows: list[np.ndarray], targets: list[np.ndarray], state) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``rows`` (token arrays, one per state row) → on the host, the NLL of ``targets``
        ``(b, L)`` (the adapter's loss, computed on the device: the logits stay there) and the logits
        of each row's last position ``(b, V)``."""
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        width = int(lengths.max())
        tokens, goal = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
        for i, (r, t) in enumerate(zip(rows, targets)):
            tokens[i, :len(r)], goal[i, :len(t)] = r, t
        self.positions += len(rows) * width
        lengths = lengths.to(self.device)
        with self.im.autocast():
            logits = self.model.prefill(torch.from_numpy(tokens).to(self.device), state, lengths)
        nll = self.im.adapter.loss(logits.flatten(0, 1), torch.from_numpy(goal).to(self.device).flatten())
        last = logits[torch.arange(len(rows), device=self.device), (lengths - 1).clamp(min=0)]
        return nll.view(len(rows), width).float().cpu().numpy(), last.float().cpu().numpy()

    def new_state(self, n: int):
        # KV caches start empty and grow as prefill fills them: an inner stage holds ~1/compression
        # of the positions, and copies of a state (one per ALT) then copy only what is filled.
        return self.model.new_state(n, 0)

    def suffixes(self, state, jobs: list[tuple[int, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Run each job ``(state row, tokens, targets)`` from a copy of that row → its NLL ``(len,)``."""
        out: list[np.ndarray | None] = [None] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
        batch: list[int] = []

        def flush():
            index = torch.tensor([jobs[i][0] for i in batch], device=self.device)
            nll, _ = self.prefill([jobs[i][1] for i in batch], [jobs[i][2] for i in batch],
                                  self.model.select_state(state, index))
            for row, i in enumerate(batch):
                out[i] = nll[row, :len(jobs[i][1])]
            batch.clear()

        for i in order:
            if not len(jobs[i][1]):
                out[i] = np.zeros(0, np.float32)
                continue
            if batch and (len(batch) + 1) * len(jobs[batch[0]][1]) > self.budget:
                flush()
            batch.append(i)
        if batch:
            flush()
        return out


def _run_windows(engine: _Engine, windows: list[_Window], alts: list[np.ndarray],
                 alt_nll: list, group_tokens: int) -> None:
    """Build every window's chain and every ALT's suffix NLL (fills ``alt_nll``)."""
    plans = [_groups(w.splits, group_tokens) for w in windows]
    state = engine.new_state(len(windows))
    row_of = list(range(len(windows)))  # each window's chain state: its row in ``state``
    for r in range(max(len(p) for p in plans)):
        active = [i for i, p in enumerate(plans) if r < len(p)]
        rows, targets, owner, jobs, job_of = [], [], [], [], []
        for i in active:
            base, group = plans[i][r]
            w = windows[i]
            for o in group:
                rows.append(w.tokens[base:o])
                targets.append(next_tokens(w.tokens, base, o))
                owner.append(i)
        index = torch.tensor([row_of[i] for i in owner], device=engine.device)
        state = engine.model.select_state(state, index)
        nll, last = engine.prefill(rows, targets, state) if max(len(x) for x in rows) else (None, None)
        k = 0
        for i in active:
            base, group = plans[i][r]
            w = windows[i]
            for o in group:
                if o > base:
                    w.last[o] = last[k]
                for a in w.alts[o]:
                    jobs.append((k, alts[a][o:], next_tokens(alts[a], o, len(alts[a]))))
                    job_of.append(a)
                k += 1
            if o > base:
                w.pieces.append(nll[k - 1, :o - base])
            row_of[i] = k - 1
            if r == len(plans[i]) - 1:  # the reference's own tail after its last split
                jobs.append((k - 1, w.tokens[o:], next_tokens(w.tokens, o, len(w.tokens))))
                job_of.append(("tail", i))
        for j, res in zip(job_of, engine.suffixes(state, jobs)):
            if isinstance(j, tuple):
                windows[j[1]].pieces.append(res)
            else:
                alt_nll[j] = res


def _logprobs(im: InferenceModel, nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Per-position log p (``(n,)`` float32) from the NLL of each next token (``nll[i]``: of
    ``tokens[i+1]``); NaN at position 0 and wherever the target is unscorable (DNA: N), as the
    Runner's full passes give it."""
    lp = np.full(len(tokens), np.nan, np.float32)
    if len(tokens) > 1:
        lp[1:] = -nll[:len(tokens) - 1]
        unscored = im.adapter.unscorable(tokens[1:])
        if unscored is not None:
            lp[1:][unscored] = np.nan
    return lp


def _alt_nll(im: InferenceModel, window: _Window, o: int, alt: np.ndarray, suffix_nll: np.ndarray) -> np.ndarray:
    """An ALT's next-token NLL: the reference's before the split, at ``o - 1`` the shared logits
    scored against the ALT's own token, then its suffix's."""
    if o == 0:
        return suffix_nll
    junction = im.adapter.loss(torch.from_numpy(window.last[o][None]), torch.tensor([int(alt[o])])).numpy()
    return np.concatenate([window.nll[:o - 1], junction.astype(np.float32), suffix_nll])


def shared_logprobs(im: InferenceModel, refs: list[np.ndarray], alts: list[tuple[int, np.ndarray]],
                    budget: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per-position log-probabilities of every reference window and every ALT window.

    ``refs``: token arrays; ``alts``: ``(index into refs, tokens)``.  Returns ``(ref_lps, alt_lps,
    positions run)``, each log-prob array as the full forward pass of that window gives it
    (``log p(x_i | x_<i)``, NaN at position 0).
    """
    windows = [_Window(r) for r in refs]
    alt_tokens = [np.asarray(t) for _, t in alts]
    splits = []
    for a, (w, t) in enumerate(alts):
        o = max(min(common_prefix(refs[w], t), len(t) - 1), 0)  # at least one position of suffix
        splits.append(o)
        windows[w].alts.setdefault(o, []).append(a)
    for w in windows:
        w.splits = sorted(w.alts) or [len(w.tokens)]
        w.alts.setdefault(w.splits[0], [])
    max_len = max([len(r) for r in refs] + [len(t) for t in alt_tokens] + [1])
    engine = _Engine(im, budget)
    alt_nll: list = [None] * len(alts)
    group_tokens = max(budget // 8, 1024)
    per_batch = max(1, budget // max_len)  # windows whose chains run together
    for start in range(0, len(windows), per_batch):
        _run_windows(engine, windows[start:start + per_batch], alt_tokens, alt_nll, group_tokens)
    ref_lps = [_logprobs(im, w.nll, w.tokens) for w in windows]
    alt_lps = [_logprobs(im, _alt_nll(im, windows[w], o, alt_tokens[a], alt_nll[a]), alt_tokens[a])
               for a, ((w, _), o) in enumerate(zip(alts, splits))]
    return ref_lps, alt_lps, engine.positions


def fill_windows(im: InferenceModel, windows: dict, pairs, budget: int) -> int:
    """``score_variants``' hook: ``windows[key] = [tokens, log-probs]``; ``pairs`` lists
    each allele's window keys ``(ref, alt[, ref-, alt-])``.  Fills the log-probs of every window
    named there (reference pass shared per strand) and returns the positions run."""
    ref_keys: dict = {}
    alt_keys: dict = {}
    for keys in pairs:
        for r, a in zip(keys[::2], keys[1::2]):
            ref_keys.setdefault(r, len(ref_keys))
            alt_keys.setdefault(a, ref_keys[r])
    refs = [windows[k][0] for k in ref_keys]
    ref_lps, alt_lps, positions = shared_logprobs(im, refs, [(w, windows[k][0]) for k, w in alt_keys.items()],
                                                  budget)
    for k, lp in zip(list(ref_keys) + list(alt_keys), ref_lps + alt_lps):
        windows[k][1] = lp
    return positions
