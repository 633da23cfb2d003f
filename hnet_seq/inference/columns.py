"""Parquet column builders: float32 vector columns (rows of (D,) vectors), time columns beside
coordinates (:class:`Seconds`) and a modality's own record columns (:class:`RecordColumns`)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa


def vector_field(name: str, dim: int) -> pa.Field:
    return pa.field(name, pa.list_(pa.float32(), dim))


def float_vectors(t: pa.DataType, segments: list) -> pa.Array:
    """A vector column (fixed-size or variable-length float32 lists) built from flat numpy
    buffers; segments are 2-D arrays (one row per row) or sequences of vectors (or None)."""
    rows = []  # 2-D float32 blocks, or None for a missing vector
    for seg in segments:
        if isinstance(seg, np.ndarray) and seg.ndim == 2:
            rows.append(seg.astype(np.float32, copy=False))
        else:
            rows.extend(np.asarray(v, np.float32)[None] if v is not None else None for v in seg)
    if pa.types.is_fixed_size_list(t):
        return pa.FixedSizeListArray.from_arrays(_flat_float32(rows), t.list_size)
    if any(r is None for r in rows):
        return pa.array([None if r is None else r.reshape(-1).tolist() for r in rows], t)
    lengths = np.array([r.shape[1] for r in rows for _ in range(r.shape[0])], np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _flat_float32(rows))


def _flat_float32(rows: list[np.ndarray]) -> pa.Array:
    """The 2-D blocks ``rows`` end to end, as one flat float32 Arrow array."""
    return pa.array(np.concatenate([r.reshape(-1) for r in rows]) if rows else np.zeros(0, np.float32), pa.float32())


class Seconds:
    """Time beside coordinates, for a modality with a clock (``adapter.units_per_second``, audio).

    Each coordinate column ``c`` (sample indices, or frames for log-mel) gets ``c_s`` (seconds,
    float64) right after it, and the table a ``sample_rate`` column (the audio's rate, Hz).
    """

    def __init__(self, units_per_second: float, sample_rate: int, columns: Sequence[str]):
        self.units_per_second, self.sample_rate, self.columns = float(units_per_second), int(sample_rate), tuple(columns)

    @classmethod
    def of(cls, adapter, *columns: str) -> "Seconds | None":
        """For ``adapter``'s coordinates in ``columns``; None for a modality without a clock."""
        ups = getattr(adapter, "units_per_second", None)
        return None if ups is None else cls(ups, adapter.sample_rate, columns)

    def schema(self, schema: pa.Schema) -> pa.Schema:
        fields = []
        for f in schema:
            fields.append(f)
            if f.name in self.columns:
                fields.append(pa.field(f"{f.name}_s", pa.float64()))
        return pa.schema(fields + [pa.field("sample_rate", pa.int32())], metadata=schema.metadata)

    def add(self, columns: dict[str, Any]) -> dict[str, Any]:
        """``columns`` (one row's values, or equal-length arrays) with the time columns added."""
        out = dict(columns)
        for c in self.columns:
            v = columns[c]
            out[f"{c}_s"] = np.asarray(v, np.float64) / self.units_per_second if np.ndim(v) else v / self.units_per_second
        n = len(columns[self.columns[0]]) if np.ndim(columns[self.columns[0]]) else None
        out["sample_rate"] = self.sample_rate if n is None else np.full(n, self.sample_rate, np.int32)
        return out


class RecordColumns:
    """A modality's own columns: ``fields`` of each record's meta as string columns (text:
    ``lang``), and ``names`` for the generic ``seq_id``/``chrom`` columns (text: ``doc``,
    ``source``).  Rows give the fields under their names and the generic columns as usual."""

    def __init__(self, fields: Sequence[str], names: dict[str, str]):
        self.fields, self.names = tuple(fields), dict(names)

    @classmethod
    def of(cls, adapter, rename: bool = True) -> "RecordColumns | None":
        """For ``adapter``; ``rename=False`` keeps the generic names (per-rank parts, merged later)."""
        names = adapter.column_names if rename else {}
        return cls(adapter.record_fields, names) if adapter.record_fields or names else None

    def values(self, meta: dict | None) -> dict[str, Any]:
        """This record's field values (None where its meta lacks one)."""
        return {f: None if (meta or {}).get(f) is None else str(meta[f]) for f in self.fields}

    def schema(self, schema: pa.Schema) -> pa.Schema:
        fields = [f.with_name(self.names.get(f.name, f.name)) for f in schema]
        return pa.schema(fields + [pa.field(f, pa.string()) for f in self.fields], metadata=schema.metadata)

    def add(self, columns: dict[str, Any]) -> dict[str, Any]:
        return {self.names.get(k, k): v for k, v in columns.items()}
