"""A deterministic, resumable, shardable IterableDataset of packed batches of windows.

Order: epoch ``e`` shuffles the windows with ``seed`` and ``e`` alone, then packs them greedily
into batches of at most ``token_budget`` positions.  Batch ``k`` of an epoch goes to rank
``k % world_size`` (the tail that does not divide evenly is dropped so every rank steps the
same number of times); a rank's ``j``-th batch goes to DataLoader worker ``j % num_workers``.
Because the DataLoader takes batches from its workers round-robin, a rank sees the same
sequence of batches with any number of workers (use ``batch_size=None``).

Every pass starts at the same place -- epoch 0, or where :meth:`set_epoch` /
:meth:`load_state_dict` put it -- whatever the number of workers (iterating does not move it;
worker processes hold copies).  Resuming: every batch carries ``batch["state"]``, the state
just after it; save that (or ``dataset.state_dict()`` when ``num_workers=0``) and give it to
:meth:`load_state_dict`.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from hnet_seq.errors import UserError
from hnet_seq.runtime.distributed import group_rank_world

from .corpus import Corpus
from .packing import make_example, pack_examples, plan_batches
from .regions import Interval


class WindowDataset(IterableDataset):
    """Packed batches (see :func:`~hnet_seq.data.packing.pack_examples`) of a corpus' windows.

    ``window``: model positions per example; ``intervals``: where windows may lie (e.g.
    ``split.train``); ``rc_augment``: each window is read from a seeded random strand
    (adapters with ``reverse_complement``).  One pass runs ``epochs`` epochs from its start
    (``None``: forever); call ``set_epoch(e)`` before each pass for a new order every epoch.
    """

    def __init__(self, corpus: Corpus, window: int, token_budget: int, *, stride: int | None = None,
                 intervals: Iterable[Interval] | None = None, max_n_frac: float = 0.1, seed: int = 0,
                 shuffle: bool = True, rc_augment: bool = False, rank: int | None = None,
                 world_size: int | None = None, epochs: int | None = 1):
        if token_budget < window:
            raise UserError(f"token_budget {token_budget} is smaller than one window ({window})")
        if rc_augment and not hasattr(corpus.adapter, "reverse_complement"):
            raise UserError(f"rc_augment: modality '{corpus.adapter.name}' has no reverse complement")
        if rank is None or world_size is None:
            rank, world_size = group_rank_world()
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in 0..{world_size - 1}")
        self.corpus, self.token_budget, self.seed, self.shuffle = corpus, token_budget, seed, shuffle
        self.rc_augment, self.rank, self.world_size, self.epochs = rc_augment, rank, world_size, epochs
        self.windows = corpus.windows(window, stride, intervals, max_n_frac)
        self.unknown_stats = dict(corpus.unknown_stats)  # N dropped with windows / left in them
        self._lengths = np.array([len(w) - 1 for w in self.windows])
        self._start = {"seed": seed, "epoch": 0, "position": 0}  # where every pass begins
        self._last = dict(self._start)  # just after the last batch yielded in this process

    # ---- order -------------------------------------------------------------------------------
    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch``, each an array of indices into ``self.windows``."""
        n = len(self.windows)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        batches = [order[b] for b in plan_batches(self._lengths[order], self.token_budget)]
        batches = batches[: len(batches) // self.world_size * self.world_size]
        return batches[self.rank:: self.world_size]

    def _strands(self, epoch: int) -> np.ndarray:
        # One seeded coin per window and epoch, independent of ranks and workers.
        return np.random.default_rng([self.seed, epoch, 1]).random(len(self.windows)) < 0.5

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return len(self.epoch_plan(0))

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rc = self.corpus.adapter.reverse_complement if self.rc_augment else None
        epoch, start, k = self._start["epoch"], self._start["position"], 0
        stop = None if self.epochs is None else epoch + self.epochs  # a resumed partial epoch counts
        while stop is None or epoch < stop:
            plan = self.epoch_plan(epoch)
            if not plan:
                raise UserError(f"{len(self.windows)} windows make fewer batches than the "
                                f"{self.world_size} ranks: lower token_budget or add data")
            flips = self._strands(epoch) if rc else None
            for j in range(start, len(plan)):
                k += 1
                if (k - 1) % workers != worker:
                    continue
                examples = [make_example(self.corpus.arrays[self.windows[i].contig], self.windows[i],
                                         rc if flips is not None and flips[i] else None) for i in plan[j]]
                batch = pack_examples(examples, self.corpus.adapter.input_key)
                after = (epoch, j + 1) if j + 1 < len(plan) else (epoch + 1, 0)
                self._last = batch["state"] = {"seed": self.seed, "epoch": after[0], "position": after[1]}
                yield batch
            epoch, start = epoch + 1, 0

    # ---- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The state after the last batch this process yielded (use ``batch["state"]`` with workers)."""
        return dict(self._last)

    def load_state_dict(self, state: dict) -> None:
        """Start the next passes just after the batch whose ``state`` this is."""
        if state.get("seed", self.seed) != self.seed:
            raise UserError(f"resume state has seed {state['seed']}, this dataset seed {self.seed}")
        self._start = {"seed": self.seed, "epoch": int(state["epoch"]), "position": int(state["position"])}
        self._last = dict(self._start)

    def set_epoch(self, epoch: int) -> None:
        """Start the next passes at the beginning of ``epoch`` (its own shuffle and strands)."""
        self.load_state_dict({"epoch": epoch, "position": 0})
