"""Where does the model put chunk boundaries?  Tracks per stage, computed here, drawn by :mod:`.chunk_views`.

:func:`boundary_tracks` runs the model over a sequence (tiled like every other command) and
returns, per chunking stage, the chunk starts and the boundary probability at every input
unit (0 where that stage cannot cut: stage ``s >= 2`` only chooses among stage ``s-1``'s
boundaries).  Coordinates are input units (bases, bytes), 0-based, relative to the sequence;
``offset`` is the genomic start for a region.  :mod:`.chunk_views` draws them as an HTML page,
a PNG or terminal colours.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hnet_seq.errors import UserError

from .inputs import record_inputs
from .model import InferenceModel, default_batch_tokens, load
from .runner import Runner
from .tiling import WorkItem, batches_by_budget, default_overlap, plan_tiles


@dataclass
class StageTrack:
    starts: np.ndarray  # chunk starts, input units (relative), ascending, starts[0] == 0
    prob: np.ndarray  # (length,) float32 boundary probability at each unit

    @property
    def num_chunks(self) -> int:
        return len(self.starts)


@dataclass
class ChunkTracks:
    seq_id: str
    data: np.ndarray  # the record's natural array (DNA tokens or bytes)
    modality: str
    chrom: str
    offset: int = 0  # genomic start
    stages: list[StageTrack] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.data)

    def symbols(self) -> list[tuple[str, int, int]]:
        """Display cells ``(character, first unit, end unit)``: one per base, or per UTF-8 character."""
        if self.modality == "dna":
            from hnet_seq.modalities.dna import decode_tokens

            seq = decode_tokens(self.data)
            return [(c, i, i + 1) for i, c in enumerate(seq)]
        return utf8_cells(bytes(np.asarray(self.data, np.uint8)))


def utf8_cells(data: bytes) -> list[tuple[str, int, int]]:
    """UTF-8 characters with their byte spans; an invalid byte is one U+FFFD cell."""
    out, i, n = [], 0, len(data)
    while i < n:
        b = data[i]
        k = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 0
        if k:
            try:
                out.append((data[i:i + k].decode("utf-8"), i, i + k))
                i += k
                continue
            except UnicodeDecodeError:
                pass
        out.append(("\ufffd", i, i + 1))
        i += 1
    return out


def boundary_tracks(checkpoint: str | Path | InferenceModel, records, *, config=None, window: int = 8192,
                    overlap: int | None = None, batch_tokens: int | None = None, device: str | None = None,
                    precision: str = "auto") -> list[ChunkTracks]:
    """Boundary tracks of each record (an iterable of Records, held in memory: for regions, not genomes)."""
    overlap = default_overlap(window, overlap)
    plan_tiles(1, window, overlap)
    im = load(checkpoint, config, device=device, precision=precision)
    if im.num_stages == 0:
        raise UserError("this model has no chunking stage: nothing to show")
    runner = Runner(im, probs=True)
    adapter = im.adapter
    jobs = []
    items = []
    for record in records:
        x, _, cmap = record_inputs(adapter, record)
        if x.shape[0] == 0:
            raise UserError(f"record '{record.id}' is empty")
        tiles = plan_tiles(int(x.shape[0]), window, overlap)
        job = {"record": record, "cmap": cmap, "n": int(x.shape[0]),
               "starts": [[] for _ in range(im.num_stages)], "cand": [[] for _ in range(im.num_stages)]}
        jobs.append(job)
        items += [WorkItem(x[t.start:t.end], t.own_start - t.start, None, (job, t)) for t in tiles]
    for group, results in runner.stream(batches_by_budget(items, batch_tokens or default_batch_tokens(im.device))):
        for res, item in zip(results, group):
            job, tile = item.tag
            for k in range(im.num_stages):
                job["starts"][k].append(res.bnd_pos[k] + tile.start)
                job["cand"][k].append((res.cand_pos[k] + tile.start, res.cand_prob[k]))
    out = []
    for job in jobs:
        rec, cmap = job["record"], job["cmap"]
        units = len(rec.data)
        rel = replace(cmap, offset=0, reverse=False)  # units from the record's start
        stages = []
        for k in range(im.num_stages):
            starts = np.unique(np.concatenate([[0], rel(np.concatenate(job["starts"][k]))]))
            starts = starts[starts < units]
            prob = np.zeros(units, np.float32)
            for pos, p in job["cand"][k]:  # ascending: a unit shared by BOS and the first byte keeps the byte's
                c = rel(pos)
                ok = c < units
                prob[c[ok]] = p[ok]
            prob[0] = 1.0
            stages.append(StageTrack(starts.astype(np.int64), prob))
        meta = rec.meta or {}
        out.append(ChunkTracks(rec.id, np.asarray(rec.data), adapter.name, meta.get("contig", rec.id),
                               int(meta.get("start", 0)) if "contig" in meta else 0, stages))
    return out
