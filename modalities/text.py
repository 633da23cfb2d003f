"""Bytes: raw UTF-8 bytes, vocabulary 256, compatible with official H-Net byte checkpoints.

As the official ``ByteTokenizer``: a token is a byte value, ``BOS = 254`` is prepended (and
``EOS = 255`` appended if ``add_eos``).  Invalid UTF-8 is bytes like any other, so any file
round-trips exactly (decode strips the BOS/EOS by position, not by value, so a 0xFE/0xFF byte
inside the text survives).

Inputs: text files (read as bytes), directories (recursively), and JSONL (``.jsonl``) with a
text field and an optional language field.  The language tag of a plain text file is its stem
(a directory of ``<lang>.txt`` files such as UDHR).  ``.gz`` files are decompressed.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from hnet_seq.errors import UserError

from .base import DiscreteAdapter, Record, register_adapter

BOS, EOS = 254, 255


@register_adapter("bytes")
class BytesAdapter(DiscreteAdapter):
    unit_name = "byte"
    vocab_size = table_size = 256
    file_suffixes = ()  # a directory contributes all of its (non-hidden) files
    record_fields = ("lang",)  # the JSONL field, or the file name's language code
    column_names = {"seq_id": "doc", "chrom": "source"}  # a document of a source file, not a contig
    default_data = "udhr"  # six UDHR translations (resources/README.md)
    eos_token = EOS

    def __init__(self, text_field: str = "text", lang_field: str = "lang", id_field: str = "id",
                 lang_from_stem: bool = True, add_bos: bool = True, add_eos: bool = False):
        self.text_field, self.lang_field, self.id_field = text_field, lang_field, id_field
        self.lang_from_stem, self.add_bos, self.add_eos = lang_from_stem, add_bos, add_eos

    # ---- reading ---------------------------------------------------------------------------
    def read_records(self, paths: Iterable[str | Path]) -> Iterator[Record]:
        """One record per text file, or per line of a JSONL file; ``meta["lang"]`` may be None."""
        for path in self.expand_inputs(paths):
            name = path.name[:-3] if path.name.endswith(".gz") else path.name
            if name.endswith(".jsonl"):
                yield from self._read_jsonl(path)
            else:
                data = np.frombuffer(_read_bytes(path), np.uint8)
                lang = Path(name).stem if self.lang_from_stem else None
                yield Record(str(path), data, {"lang": lang, "source": str(path)})

    def _read_jsonl(self, path: Path) -> Iterator[Record]:
        for lineno, line in enumerate(_read_bytes(path).splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: invalid JSON ({e.msg})") from None
            text = obj.get(self.text_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise UserError(f"{where}: no string field '{self.text_field}' (set text_field=...)")
            # surrogateescape gives back the original bytes of text decoded that way upstream
            data = np.frombuffer(text.encode("utf-8", "surrogateescape"), np.uint8)
            lang = obj.get(self.lang_field)
            rid = str(obj.get(self.id_field, where))
            yield Record(rid, data, {"lang": lang, "source": str(path), "line": lineno})

    def record_from(self, value, id: str) -> Record:
        """Text (``str``, as UTF-8) or raw ``bytes``."""
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return Record(id, np.frombuffer(data, np.uint8), {"lang": None})

    def text_record(self, text: str | bytes, id: str = "sequence", where: str = "text") -> Record:
        """UTF-8 bytes of ``text`` (unpaired surrogates kept as the bytes they stand for)."""
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        return Record(id, np.frombuffer(data, np.uint8), {})

    def prompt_tokens(self, prompt: str | bytes) -> np.ndarray:
        """BOS + the prompt's bytes; never an EOS (the prompt does not end the text)."""
        tokens = super().prompt_tokens(prompt)
        if self.add_eos:
            tokens = tokens[:-1]
        if len(tokens) == 0:
            raise UserError("prompt: empty, and the byte model has no BOS (add_bos=false)")
        return tokens

    def text_of(self, tokens: np.ndarray) -> str:
        """Bytes as UTF-8 (invalid sequences replaced); BOS/EOS values dropped."""
        return bytes(int(t) for t in tokens if t < 256 and t not in (BOS, EOS)).decode("utf-8", "replace")

    # ---- tensors ---------------------------------------------------------------------------
    def encode(self, record: Record) -> torch.Tensor:
        """``(L + add_bos + add_eos,) int64`` byte tokens."""
        parts = ([BOS] if self.add_bos else []), record.data, ([EOS] if self.add_eos else [])
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))

    def decode(self, encoded, meta: dict | None = None) -> bytes:
        """Tokens -> the original bytes (BOS/EOS removed by position)."""
        t = np.asarray(encoded.cpu() if isinstance(encoded, torch.Tensor) else encoded)
        t = t[1 if self.add_bos else 0: len(t) - (1 if self.add_eos else 0)]
        return t.astype(np.uint8).tobytes()


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
