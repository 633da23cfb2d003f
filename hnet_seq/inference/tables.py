"""Result tables: :class:`TableWriter` streams rows to parquet or TSV (atomically, with a JSON sidecar).

* :class:`TableWriter` streams rows to parquet (``pyarrow.parquet.ParquetWriter``) or TSV, into
  a temporary file beside the target that is renamed only when everything was written; on an
  exception the temporary file is deleted, so a failed run leaves no partial output.  The run
  metadata goes into the parquet schema and into a JSON sidecar ``<table>.json``.
* TSV is plain: one header line, then one line per row, so that ``pandas.read_csv(path,
  sep="\t")`` and R's ``read.delim(path)`` read it with no options.  A missing value is an
  empty cell, floats are ``%.10g`` (``NaN``, ``Inf``, ``-Inf``), a vector is comma-separated,
  and a tab or newline inside a text cell becomes a space.  :func:`write_tsv` prints the same
  columns to stdout.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from hnet_seq.runtime.atomic import publish, temp_path_for, untrack

from .columns import RecordColumns, Seconds, float_vectors
from .outputs import AtomicFile, output_format


META_KEY = b"hnet_seq"
# Stored with every table (schema metadata and sidecar); a caller's own "conventions" replace these.
TABLE_CONVENTIONS = {
    "coordinates": "0-based half-open [start, end) on the + strand, as in BED; chrom as named in the input",
    "strand": "'-': the sequence is the reverse complement of [start, end); '+' or '.' (none given): as is",
    "region": "--region CONTIG:START-END is 1-based inclusive (samtools); seq_id of an unnamed interval too",
    "missing": "empty TSV cell, parquet null",
}


class TableWriter:
    """Stream rows (dicts of columns) to parquet or TSV; the file appears only on :meth:`close`.

    ``schema`` fixes the columns (a ``vector`` column is a ``fixed_size_list<float32>``);
    ``metadata`` (a JSON-able dict, with :data:`TABLE_CONVENTIONS` added) is stored in the
    parquet schema under ``b"hnet_seq"`` and, with ``sidecar``, in ``<path>.json`` (with the
    columns and row count), published with the table (a TSV holds nothing but the table).
    Rows are buffered up to ``rows_per_batch``; full batches are converted and written
    (zstd-compressed) by a background thread, in order, so that the
    caller goes on computing meanwhile (``background=False``: in the calling thread).  At most
    one batch waits for the thread, which bounds memory to about three batches.
    ``seconds`` (:class:`Seconds`) adds time columns beside coordinate columns (audio);
    ``record`` (:class:`RecordColumns`) the modality's own columns (text: ``lang``, ``doc``, ``source``).
    """

    def __init__(self, path: str | Path, schema: pa.Schema, metadata: dict | None = None,
                 fmt: str | None = None, rows_per_batch: int = 8192, background: bool = True,
                 sidecar: bool = True, seconds: Seconds | None = None, record: RecordColumns | None = None):
        self.path = Path(path)
        self.seconds = seconds
        self.record = record
        if record is not None:
            schema = record.schema(schema)
        if seconds is not None:
            schema = seconds.schema(schema)
            metadata = {**(metadata or {}), "sample_rate": seconds.sample_rate,
                        "seconds": "columns *_s are the coordinate beside them in seconds"}
        self.fmt = fmt or output_format(self.path, ("parquet", "tsv"))
        self.metadata = {"conventions": TABLE_CONVENTIONS, **(metadata or {})}
        self.schema = schema.with_metadata({META_KEY: json.dumps(self.metadata).encode()})
        self.sidecar = sidecar_path(self.path) if sidecar else None
        self.rows_per_batch = rows_per_batch
        self._columns: dict[str, list] = {f.name: [] for f in schema}  # per column: segments
        self._buffered = 0
        self.rows = 0
        self._tmp = temp_path_for(self.path)
        self._side: AtomicFile | None = None  # the sidecar's temporary file, once finished
        self._finished = False
        self._writer = None
        self._text = None
        self._worker = _Worker() if background else None
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd")
            else:
                import gzip

                opener = gzip.open if str(self.path).endswith(".gz") else open
                self._text = opener(self._tmp, "wt", newline="")
                self._text.write(_tsv_line(schema.names))
        except BaseException:
            self.abort()
            raise

    def write_row(self, **row: Any) -> None:
        if self.seconds is not None:
            row = self.seconds.add(row)
        if self.record is not None:
            row = self.record.add(row)
        for name, segments in self._columns.items():
            segments.append([row.get(name)])
        self._buffered += 1
        if self._buffered >= self.rows_per_batch:
            self.flush()

    def write_columns(self, columns: dict[str, Any]) -> None:
        """Append many rows at once: every column maps to a sequence or numpy array of equal length
        (a vector column may be a 2-D array, one row per row)."""
        if self.seconds is not None:
            columns = self.seconds.add(columns)
        if self.record is not None:
            columns = self.record.add(columns)
        n = None
        for name, segments in self._columns.items():
            if name not in columns:
                raise KeyError(f"column {name} missing")
            col = columns[name]
            segments.append(col)
            n = len(col)
        self._buffered += n or 0
        if self._buffered >= self.rows_per_batch:
            self.flush()

    @staticmethod
    def _array(field: pa.Field, segments: list) -> pa.Array:
        """One column's buffered segments (sequences or numpy arrays) as an Arrow array."""
        t = field.type
        if pa.types.is_fixed_size_list(t) or (pa.types.is_list(t) and pa.types.is_floating(t.value_type)):
            return float_vectors(t, segments)
        if all(isinstance(seg, np.ndarray) and seg.ndim == 1 for seg in segments):
            return pa.array(np.concatenate(segments), t)
        values = []
        for seg in segments:
            values.extend(seg.tolist() if isinstance(seg, np.ndarray) else
                          [v.tolist() if isinstance(v, np.ndarray) else v for v in seg])
        return pa.array(values, t)

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread (or write them now without one)."""
        if not self._buffered:
            return
        columns, n = self._columns, self._buffered
        self.rows += n
        self._columns = {name: [] for name in self._columns}
        self._buffered = 0
        if self._worker is not None:
            self._worker.submit(lambda: self._write(columns, n))
        else:
            self._write(columns, n)

    def _write(self, columns: dict[str, list], n: int) -> None:
        arrays = [self._array(f, columns[f.name]) for f in self.schema]
        if self._writer is not None:
            self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        else:
            cols = [a.to_pylist() for a in arrays]
            self._text.writelines(_tsv_line(_tsv_cell(c[i]) for c in cols) for i in range(n))

    def close(self) -> Path:
        """Write what is buffered, close, and rename the temporary file onto the target (then
        its sidecar).  On failure (here, or earlier in the writer thread) nothing is published.
        """
        self.finish()
        publish(self._tmp, self.path)
        if self._side is not None:
            self._side.close()
        return self.path

    def finish(self) -> None:
        """Write what is buffered and close the temporary files, without renaming them yet
        (:class:`Outputs` finishes every writer before it renames any); a second call does nothing."""
        if self._finished:
            return
        try:
            self.flush()
            if self._worker is not None:
                self._worker.join()  # re-raises what the thread failed with
            if self._writer is not None:
                self._writer.close()
            if self._text is not None:
                self._text.close()
            self._side = self._write_sidecar()
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def _write_sidecar(self) -> "AtomicFile | None":
        """The JSON sidecar, written to its temporary name (published after the table)."""
        if self.sidecar is None:
            return None
        side = AtomicFile(self.sidecar)
        doc = {"table": self.path.name, "format": self.fmt, "rows": self.rows,
               "columns": [{"name": f.name, "type": str(f.type)} for f in self.schema], **self.metadata}
        side.tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        return side

    def abort(self) -> None:
        """Drop everything written so far (no file appears)."""
        try:
            if self._worker is not None:
                self._worker.join(discard=True)
            if self._writer is not None:
                self._writer.close()
            if self._text is not None:
                self._text.close()
        except Exception:
            pass
        Path(self._tmp).unlink(missing_ok=True)
        untrack(self._tmp)
        if self._side is not None:
            self._side.abort()


class _Worker:
    """One thread running submitted functions in order; :meth:`submit` blocks while one waits."""

    def __init__(self):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="hnet-seq-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (fn := self._queue.get()) is not None:
            if self._error is None:  # after a failure, drain without running
                try:
                    fn()
                except BaseException as e:  # handed to the caller by submit/join
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn) -> None:
        self._raise()
        self._queue.put(fn)

    def join(self, discard: bool = False) -> None:
        """Finish what was submitted and stop; raise the thread's error unless ``discard``."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if not discard:
            self._raise()


def sidecar_path(path: str | Path) -> Path:
    """Where a table's metadata sidecar goes: ``scores.tsv`` -> ``scores.tsv.json``."""
    return Path(f"{path}.json")


def _tsv_cell(v) -> str:
    """One TSV cell as pandas and R read it by default (see the module docstring)."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "NaN" if v != v else ("Inf" if v > 0 else "-Inf") if abs(v) == float("inf") else f"{v:.10g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return ",".join(_tsv_cell(float(x)) for x in np.asarray(v).reshape(-1))
    return str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _tsv_line(cells: Iterable[str]) -> str:
    return "\t".join(cells) + "\n"


def write_tsv(schema: pa.Schema, rows: Iterable[dict], stream=None, seconds: Seconds | None = None,
              record: RecordColumns | None = None) -> None:
    """Rows (dicts) as a plain TSV with ``schema``'s columns, as :class:`TableWriter` writes them
    (default stream: stdout; ``seconds`` and ``record`` as for :class:`TableWriter`)."""
    import sys

    stream = stream or sys.stdout
    if seconds is not None:
        schema = seconds.schema(schema)
    if record is not None:
        schema = record.schema(schema)
    stream.write(_tsv_line(schema.names))
    for row in rows:
        row = seconds.add(row) if seconds is not None else row
        row = record.add(row) if record is not None else row
        stream.write(_tsv_line(_tsv_cell(row.get(name)) for name in schema.names))



def read_metadata(path: str | Path) -> dict:
    """The ``hnet_seq`` metadata dict of a parquet file written here."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(str(path)).metadata or {}
    return json.loads(meta.get(META_KEY, b"{}"))
