"""Multi-process (torchrun) outputs: every rank writes a part, rank 0 merges them in input order.

Every rank writes its rows with an extra ``_record`` column, a key that increases in input
order: the record index ``i`` when rank ``r`` of ``W`` processes the records ``i % W == r``
(embed, score-variants), or the tile number when the ranks share the tiles (score, so that one
long contig keeps every GPU busy).  Parts are sorted by ``_record``, so rank 0 merges them with
a streaming k-way merge (a few row batches in memory at a time) and writes the final file
without the ``_record`` column.
"""
from __future__ import annotations

import contextlib
import heapq
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hnet_seq.errors import UserError

from .tables import TableWriter

RECORD = "_record"


def part_path(path: str | Path, rank: int) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.part{rank}.parquet")


def _runs(table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """``(key, rows)`` for every run of equal ``_record`` values of ``table``."""
    rec = table.column(RECORD).to_numpy()
    bounds = [0, *(np.flatnonzero(rec[1:] != rec[:-1]) + 1).tolist(), len(rec)] if len(rec) else [0]
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(rec[a]), table.slice(a, b - a)


def _groups(path: Path) -> Iterator[tuple[int, pa.Table]]:
    """``(record index, rows of that record)`` in file order."""
    carry: pa.Table | None = None
    for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=16384):
        table = pa.Table.from_batches([batch])
        runs = list(_runs(pa.concat_tables([carry, table]) if carry is not None else table))
        if runs:
            yield from runs[:-1]  # the last record may go on in the next batch
            carry = runs[-1][1]
    if carry is not None:
        yield from _runs(carry)


def merged_groups(parts: list[Path]) -> Iterator[tuple[int, pa.Table]]:
    """``(key, rows)`` of every part file (each sorted by ``_record``) in key order; equal keys
    come one part after another, in the order of ``parts``."""
    iters = [_groups(p) for p in parts if p.exists()]
    heap = []
    for k, it in enumerate(iters):
        first = next(it, None)
        if first is not None:
            heap.append((first[0], k, first[1]))
    heapq.heapify(heap)
    while heap:
        rec, k, table = heapq.heappop(heap)
        yield rec, table
        nxt = next(iters[k], None)
        if nxt is not None:
            heapq.heappush(heap, (nxt[0], k, nxt[1]))


def merge_parts(parts: list[Path], out: TableWriter) -> int:
    """Stream-merge part files (each sorted by ``_record``) into ``out``; returns rows written.

    The parts' own columns are copied; ``out`` adds what it derives (time, renamed columns)."""
    rows = 0
    for _, table in merged_groups(parts):
        cols = {}
        for name in (n for n in table.column_names if n != RECORD):
            col = table.column(name)
            if (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)) \
                    and pa.types.is_floating(col.type.value_type):
                flat = col.combine_chunks()
                vals = flat.flatten().to_numpy(zero_copy_only=False)
                widths = flat.value_lengths().to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0, int)
                if len(flat) and (widths == widths[0]).all():
                    cols[name] = vals.reshape(len(flat), -1)
                else:  # stages of different widths: one array per row
                    cuts = np.cumsum(widths)[:-1]
                    cols[name] = np.split(vals, cuts) if len(flat) else []
            else:
                cols[name] = col.to_pylist()
        out.write_columns(cols)
        rows += table.num_rows
    return rows


@contextlib.contextmanager
def all_ranks_succeed(what: str):
    """Leave the block on every rank together: when another rank failed, raise a
    :class:`UserError` here too (so that an enclosing :class:`~.io.Outputs` writes nothing)."""
    from hnet_seq.runtime.distributed import broadcast_ok

    ok = False
    try:
        yield
        ok = True
    finally:
        ok = broadcast_ok(ok)  # this rank's own exception, if any, goes on after the vote
    if not ok:
        raise UserError(f"{what} failed on another rank; no output written")


def with_record_column(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(RECORD, pa.int64()))


def rank_parts(path: str | Path, world: int) -> list[Path]:
    """The part files of ``path`` of every rank, in rank order."""
    return [part_path(path, r) for r in range(world)]


def merge_on_main(dist, merge: Callable[[], None], parts: list[Path]) -> None:
    """Once every rank has written its parts: rank 0 runs ``merge`` and then removes ``parts``;
    the other ranks wait for it, so that no rank returns before the outputs exist."""
    from hnet_seq.runtime.distributed import barrier

    barrier()
    if dist.is_main:
        merge()
        for p in parts:
            p.unlink(missing_ok=True)
    barrier()


__all__ = ["RECORD", "all_ranks_succeed", "merge_on_main", "merge_parts", "merged_groups", "part_path",
           "rank_parts", "with_record_column"]
