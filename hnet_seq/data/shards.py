"""webdataset ``.tar`` shards of records: write once, stream back with bounded memory.

A record is one sample: ``<key>.<data_key>.npy`` (``tokens`` or ``samples``), one ``.npy`` per
array in its meta (e.g. ``<key>.mask.npy``) and ``<key>.json`` with the rest of the meta plus
``id``, ``modality``, ``data_key`` and ``arrays``.  Keys are a running number because record
ids may hold dots and slashes, which a tar key cannot.

Reading streams one tar member at a time; memory is bounded by the shuffle buffer (records
held at once), not by the size of the shard set.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from hnet_seq.runtime.atomic import make_temp_dir, untrack, why_not_writable
from hnet_seq.errors import UserError

from .record import Record


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def record_to_sample(record, key: str, modality: str, data_key: str) -> dict:
    arrays = {k: v for k, v in record.meta.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in record.meta.items() if k not in arrays}
    meta.update(id=record.id, modality=modality, data_key=data_key, arrays=sorted(arrays))
    sample = {"__key__": key, f"{data_key}.npy": _npy(record.data),
              "json": json.dumps(meta, default=_json_default).encode()}
    sample.update({f"{k}.npy": _npy(v) for k, v in arrays.items()})
    return sample


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot store {type(v).__name__} in shard metadata")


def check_output_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path if it does not exist or is an empty directory, else UserError."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty directory; choose another out_dir",
                        params=("out_dir",))
    above = next((p for p in out.absolute().parents if p.exists()), None)
    if above is not None and not (above.is_dir() and os.access(above, os.W_OK)):
        what = "is a file, not a folder" if not above.is_dir() else "is not writable"
        raise UserError(f"{out}: cannot write shards here ({above} {what}); choose another out_dir",
                        params=("out_dir",))
    return out


def write_shards(adapter, inputs: Iterable[str | Path], out_dir: str | Path, max_shard_bytes: int = 256 << 20,
                 progress: Callable[[Path, int], None] | None = None) -> list[Path]:
    """Read ``inputs`` with ``adapter`` and write ``out_dir/shard-000000.tar``, ... .

    Shards close once they pass ``max_shard_bytes``.  Everything is written to a temporary
    sibling directory that is renamed at the end, so an error leaves no partial output.
    ``progress(file, records_in_file)`` is called after each input file.  Returns the shards.
    """
    import webdataset as wds

    out = check_output_dir(out_dir)
    files = adapter.expand_inputs(inputs)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        make_temp_dir(tmp)
    except OSError as e:
        raise UserError(f"{out}: cannot write shards here ({why_not_writable(e)})") from None
    try:
        n = 0
        with wds.ShardWriter(str(tmp / "shard-%06d.tar"), maxsize=max_shard_bytes, verbose=0) as writer:
            for path in files:
                before = n
                for record in adapter.read_records([path]):
                    writer.write(record_to_sample(record, f"{n:09d}", adapter.name, adapter.data_key))
                    n += 1
                if progress:
                    progress(path, n - before)
        shards = sorted(p.name for p in tmp.glob("shard-*.tar"))
        (tmp / "manifest.json").write_text(json.dumps(
            {"modality": adapter.name, "records": n, "shards": shards, "inputs": [str(f) for f in files]}, indent=1))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
        untrack(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        untrack(tmp)
        raise
    return [out / s for s in shards]


def expand_shards(urls: str | Path | Sequence[str | Path]) -> list[str]:
    """Local shard paths from a path, a directory (its ``*.tar``), a brace pattern
    (``data/shard-{000000..000009}.tar``) or a list of those."""
    import braceexpand

    items = [urls] if isinstance(urls, (str, Path)) else list(urls)
    paths: list[str] = []
    for item in items:
        if Path(item).is_dir():
            paths += sorted(str(p) for p in Path(item).glob("*.tar"))
            continue
        for p in braceexpand.braceexpand(str(item)):
            if not Path(p).is_file():
                raise UserError(f"{p}: no such shard")
            paths.append(p)
    if not paths:
        raise UserError(f"{urls}: no .tar shards found")
    return paths


def sample_to_record(sample: dict, modality: str | None = None):
    """A webdataset sample (as read) back to a Record; missing keys -> UserError."""
    shard, key = sample.get("__url__", "?"), sample.get("__key__", "?")
    have = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "none"
    if "json" not in sample:
        raise UserError(f"{shard}: sample '{key}' has no '{key}.json' (has: {have})")
    meta = json.loads(sample["json"])
    data_key, arrays = meta.pop("data_key", "tokens"), meta.pop("arrays", [])
    for name in [data_key, *arrays]:
        if f"{name}.npy" not in sample:
            raise UserError(f"{shard}: sample '{key}' has no '{key}.{name}.npy' (has: {have})")
    stored = meta.pop("modality", None)
    if modality is not None and stored is not None and stored != modality:
        raise UserError(f"{shard}: sample '{key}' is {stored} data, not {modality}")
    meta.update({name: np.load(io.BytesIO(sample[f"{name}.npy"])) for name in arrays})
    return Record(str(meta.pop("id", key)), np.load(io.BytesIO(sample[f"{data_key}.npy"])), meta)


def read_shards(urls: str | Path | Sequence[str | Path], shuffle_buffer: int = 0, seed: int = 0,
                modality: str | None = None) -> Iterator:
    """Stream Records from shards, shuffled within a buffer of ``shuffle_buffer`` records."""
    records = _read_in_order(expand_shards(urls), modality)
    return _shuffled(records, shuffle_buffer, seed) if shuffle_buffer > 1 else records


def _read_in_order(paths: list[str], modality: str | None) -> Iterator:
    from webdataset.tariterators import tarfile_samples

    for path in paths:
        try:
            samples = tarfile_samples([{"url": path}])
            for sample in samples:
                yield sample_to_record(sample, modality)
        except (tarfile.TarError, OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable shard ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    """The first line of ``e``'s message (webdataset wraps tar errors as (reason, stream, url))."""
    first = e.args[0] if e.args else e
    while isinstance(first, tuple) and first:
        first = first[0]
    text = (str(first).strip().splitlines() or [type(e).__name__])[0].split(" @ <")[0]
    return f"truncated: {text}" if "end of data" in text or "truncated" in text else text


def _shuffled(items: Iterator, size: int, seed: int) -> Iterator:
    # Keep `size` items; each new one takes the place of a random one, which is yielded.
    rng = np.random.default_rng(seed)
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(size))
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)
    yield from buf
