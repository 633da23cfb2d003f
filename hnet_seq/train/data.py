"""Training and held-out batches for ``hnet-seq train``, on top of :mod:`hnet_seq.data`.

* Files (FASTA, text, JSONL, audio, or folders of them): a :class:`~hnet_seq.data.Corpus` in
  memory, split into training and held-out intervals that never overlap (the tail of every
  record, or whole records), and a :class:`~hnet_seq.data.WindowDataset` of packed batches
  that is deterministic, resumable and split across ranks.
* webdataset shards: records streamed with a shuffle buffer and packed as they come; a rank
  takes every ``world_size``-th batch; resuming skips the batches already consumed.

Batches are the pipeline's dicts: ``{input_key, "targets", "loss_weights", "cu_seqlens",
"max_seqlen", ...}``; :func:`to_device` turns one into tensors on the training device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..errors import UserError
from ..nn.packing import Packing

def default_paths(adapter) -> list[str]:
    """What a run reads when neither ``data_paths`` nor ``data.paths`` is given: the adapter's
    ``default_data`` shipped in ``hnet_seq/resources``, if it has one."""
    if adapter.default_data is None:
        return []
    from importlib.resources import files

    return [str(files("hnet_seq.resources") / adapter.default_data)]


def is_shard_spec(path: str) -> bool:
    p = Path(path)
    return path.endswith(".tar") or "{" in path or (p.is_dir() and any(p.glob("*.tar")))


def check_paths(paths: list[str], what: str = "data path", params: tuple[str, ...] = ()) -> None:
    """One-line error for the first path that does not exist (brace patterns: every file);
    ``what`` names the setting, ``params`` the parameters in it (:class:`UserError`)."""
    for path in paths:
        if "{" in path:
            from ..data.shards import expand_shards

            expand_shards(path)  # raises a UserError naming the missing shard
        elif not Path(path).exists():
            raise UserError(f"{path}: no such file or directory ({what})", params=params)


@dataclass
class Batch:
    inputs: torch.Tensor  # (T,) tokens or (T, F) frames
    targets: torch.Tensor  # (T,) or (T, F)
    weights: torch.Tensor  # (T,) float32, 0 = not in the loss
    packing: Packing

    @property
    def positions(self) -> int:
        return self.inputs.shape[0]


def to_device(batch: dict, input_key: str, device: torch.device) -> Batch:
    non_blocking = device.type == "cuda"
    inputs = batch[input_key]
    # The total comes from the host copy: Packing would otherwise read it back from the device.
    return Batch(inputs.to(device, non_blocking=non_blocking),
                 batch["targets"].to(device, non_blocking=non_blocking),
                 batch["loss_weights"].to(device, non_blocking=non_blocking),
                 Packing(batch["cu_seqlens"].to(device, non_blocking=non_blocking), int(batch["max_seqlen"]),
                         inputs.shape[0]))


class _ShardStream:
    """Packed batches from streamed shards, every ``world``-th one for this rank, resumable by count."""

    def __init__(self, adapter, paths, seq_len, budget, shuffle_buffer, seed, rank, world, loop=True):
        self.adapter, self.paths, self.seq_len, self.budget = adapter, paths, seq_len, budget
        self.shuffle_buffer, self.seed, self.rank, self.world, self.loop = shuffle_buffer, seed, rank, world, loop
        self.epoch, self.position = 0, 0  # this rank's batches consumed in the epoch

    def __iter__(self):
        from ..data.packing import stream_batches
        from ..data.shards import read_shards

        while True:
            records = read_shards(self.paths, self.shuffle_buffer, seed=self.seed + self.epoch,
                                  modality=self.adapter.name)
            mine = 0
            for k, batch in enumerate(stream_batches(self.adapter, records, self.seq_len, self.budget)):
                if k % self.world != self.rank:
                    continue
                mine += 1
                if mine <= self.position:
                    continue
                self.position = mine
                batch["state"] = self.state_dict()
                yield batch
            if not self.loop:
                return
            if mine == 0:
                raise UserError(f"{self.paths}: the shards make no batch for rank {self.rank}")
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "world_size": self.world}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"]) * int(state.get("world_size", self.world)) // self.world


def _spread(n: int, k: int) -> list[int]:
    """``min(k, n)`` indices spread evenly over ``range(n)``, first and last included."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C (and a terminal's hang-up) reach the whole process group: workers keep serving
    # batches while the main process finishes its step and writes a checkpoint.  (SIGTERM is
    # left alone: the DataLoader stops stuck workers with it.)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class TrainData:
    """Training batches (endless, resumable) and a fixed list of held-out batches for this rank."""

    def __init__(self, run_cfg, adapter, rank: int = 0, world_size: int = 1, paths: list[str] | None = None):
        from ..data import Corpus, WindowDataset, split_by_record, split_by_region

        d = run_cfg.data
        self.adapter, self.rank, self.world_size = adapter, rank, world_size
        self.paths = list(paths if paths else d.paths) or default_paths(adapter)
        if not self.paths:
            raise UserError(f"modality '{adapter.name}' has no default data: give data_paths or data.paths",
                            params=("data_paths",))
        check_paths(self.paths)
        check_paths(d.heldout_paths, "data.heldout_paths")
        self.seed = run_cfg.train.seed
        self.num_workers = d.num_workers
        self._loader_iter = None
        self.eval_dataset = None
        budget = d.tokens_per_batch
        if any(is_shard_spec(p) for p in self.paths):
            self.dataset = _ShardStream(adapter, self.paths, d.seq_len, budget, d.shuffle_buffer, self.seed,
                                        rank, world_size)
            self.num_workers = 0  # a stream is read in the main process
            heldout_corpus, heldout_intervals = None, None
            if d.heldout_paths:
                heldout_corpus = Corpus(adapter, adapter.read_records(d.heldout_paths))
        else:
            corpus = Corpus(adapter, adapter.read_records(self.paths))
            heldout_intervals = None
            if d.heldout_paths:
                heldout_corpus, train_intervals = Corpus(adapter, adapter.read_records(d.heldout_paths)), None
            elif d.heldout_fraction > 0:
                if d.heldout_by == "record":
                    if len(corpus.lengths) < 2:
                        raise UserError(f"{self.paths[0]}: data.heldout_by=record needs at least 2 records")
                    split = split_by_record(corpus.lengths, d.heldout_fraction, seed=self.seed)
                else:
                    split = split_by_region(corpus.lengths, d.heldout_fraction, where="end")
                heldout_corpus, train_intervals, heldout_intervals = corpus, split.train, split.heldout
            else:
                heldout_corpus, train_intervals = None, None
            self.dataset = WindowDataset(corpus, d.seq_len, budget, stride=d.stride, intervals=train_intervals,
                                         max_n_frac=d.max_n_frac, seed=self.seed, shuffle=True,
                                         rc_augment=d.rc_augment, rank=rank, world_size=world_size, epochs=None)
        self.eval_batches: list[dict] = []
        # N (unscorable) positions: dropped with their windows, or left in windows as input only.
        self.unknown_stats: dict[str, dict] = {}
        if isinstance(self.dataset, WindowDataset):
            self.unknown_stats["train"] = self.dataset.unknown_stats
        if heldout_corpus is not None and d.eval_tokens > 0:
            self._take_eval_batches(d, heldout_corpus, heldout_intervals)
        self.state: dict = self.dataset.state_dict()

    def _take_eval_batches(self, d, corpus, intervals) -> None:
        """``eval_batches``: the held-out batches ``d.eval_tokens`` asks for, the same on every rank."""
        from ..data import WindowDataset

        budget = d.tokens_per_batch
        ds = WindowDataset(corpus, d.seq_len, budget, intervals=intervals, max_n_frac=d.max_n_frac, shuffle=False,
                           rank=self.rank, world_size=self.world_size, epochs=1)
        wanted = max(1, math.ceil(d.eval_tokens / (self.world_size * budget)))
        # The same batches on every rank (the pipeline drops the tail that does not divide).
        chosen = set(range(wanted) if d.eval_sample == "first" else _spread(len(ds), wanted))
        for k, batch in enumerate(ds):
            if len(self.eval_batches) == len(chosen):
                break
            if k in chosen:
                batch.pop("state", None)
                self.eval_batches.append(batch)
        self.eval_dataset = ds
        self.unknown_stats["heldout"] = ds.unknown_stats

    # ---- iteration -----------------------------------------------------------------------
    def _iterator(self) -> Iterator[dict]:
        if self.num_workers > 0:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                                                 persistent_workers=False, prefetch_factor=4,
                                                 worker_init_fn=_ignore_sigint)
            return iter(loader)
        return iter(self.dataset)

    def next_batch(self) -> dict:
        if self._loader_iter is None:
            self._loader_iter = self._iterator()
        batch = next(self._loader_iter)
        self.state = batch.pop("state")
        return batch

    # ---- resume --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The position just after the last batch handed out (ints only)."""
        return {**{k: int(v) for k, v in self.state.items()}, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        old_world = int(state.pop("world_size", self.world_size))
        if old_world != self.world_size and "position" in state:
            # Ranks step in lockstep: position j on W ranks = j*W global batches.
            state["position"] = int(state["position"]) * old_world // self.world_size
        self.dataset.load_state_dict(state)
        self.state = self.dataset.state_dict()
        self._loader_iter = None

    @property
    def eval_positions(self) -> int:
        return sum(int(b["cu_seqlens"][-1]) for b in self.eval_batches)

    @property
    def eval_unscored(self) -> int:
        """Held-out targets of this rank that are never scored (DNA: N), so not in the loss."""
        masks = [self.adapter.unscorable(b["targets"]) for b in self.eval_batches]
        return sum(int(m.sum()) for m in masks if m is not None)


__all__ = ["Batch", "TrainData", "check_paths", "default_paths", "is_shard_spec", "to_device"]
