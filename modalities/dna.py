"""DNA: tokens A=0 C=1 G=2 T=3 N=4, lowercase kept as a soft-mask, reverse complement.

Encoding is one numpy table lookup per record (a 5 Mbp genome takes milliseconds).  IUPAC
ambiguity codes become N (and ``U`` reads as ``T``); anything else is an error naming the
record.  The soft-mask (lowercase, usually repeats) is ``meta["mask"]``, a bool array; the
loss policy is ``soft_mask="ignore"`` (weight 1 everywhere) or ``"downweight"`` (weight
``soft_mask_weight`` on masked positions, as GPN does; 0 drops them from the loss).  N is
input only: it is never a scored target (see ``ModalityAdapter.unknown_token``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from hnet_seq.data.regions import Interval, read_bed, resolve_contig
from hnet_seq.errors import UserError

from . import fasta
from .base import DiscreteAdapter, Record, register_adapter

BASES = "ACGTN"
N_TOKEN = 4
INVALID = 255
# ASCII byte -> token; both cases, IUPAC ambiguity codes -> N.
ENCODE = np.full(256, INVALID, np.uint8)
for _i, _b in enumerate(BASES):
    ENCODE[ord(_b)] = ENCODE[ord(_b.lower())] = _i
for _b in "RYSWKMBDHV":
    ENCODE[ord(_b)] = ENCODE[ord(_b.lower())] = N_TOKEN
ENCODE[ord("U")] = ENCODE[ord("u")] = 3
DECODE_UPPER = np.frombuffer(b"ACGTN", np.uint8)
COMPLEMENT = np.array([3, 2, 1, 0, 4, 5, 6, 7], np.uint8)  # A<->T, C<->G, N (and padding) fixed


def encode_ascii(seq: str | bytes, where: str = "sequence") -> tuple[np.ndarray, np.ndarray]:
    """ASCII sequence -> (tokens ``(L,) uint8``, soft-mask ``(L,) bool``, True where lowercase)."""
    raw = np.frombuffer(seq.encode("latin-1") if isinstance(seq, str) else seq, np.uint8)
    tokens = ENCODE[raw]
    bad = np.flatnonzero(tokens == INVALID)
    if bad.size:
        raise UserError(f"{where}: invalid character {chr(raw[bad[0]])!r} at position {bad[0]} "
                        f"(expected A, C, G, T, N or IUPAC codes)")
    return tokens, raw >= ord("a")


def decode_tokens(tokens: np.ndarray | torch.Tensor, mask: np.ndarray | None = None) -> str:
    """Tokens (and soft-mask) -> sequence string; lowercase where ``mask`` is True."""
    t = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens).astype(np.intp)
    chars = DECODE_UPPER[np.minimum(t, N_TOKEN)]
    if mask is not None:
        chars = chars + (np.asarray(mask, bool) * 32).astype(np.uint8)  # 'A' + 32 = 'a'
    return chars.tobytes().decode("ascii")


def reverse_complement(tokens):
    """Reverse complement of a token array ``(L,)`` (numpy or torch); N stays N."""
    if isinstance(tokens, torch.Tensor):
        return torch.as_tensor(COMPLEMENT, device=tokens.device).to(tokens.dtype)[tokens.flip(0).long()]
    return COMPLEMENT[np.asarray(tokens)[::-1]]


@register_adapter("dna")
class DNAAdapter(DiscreteAdapter):
    unit_name = "base"
    unknown_token = N_TOKEN  # N (and IUPAC codes): model input, never a scored target
    unknown_name = "N"
    vocab_size = 5
    default_data = "shigella_sonnei_53G_plasmids.fa.gz"
    symbols = "ACGTN"  # token order: the columns of per-position distributions
    double_stranded = genomic = tokens_are_data = True
    file_suffixes = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz", ".fa.bgz", ".fq", ".fastq")

    def __init__(self, soft_mask: str = "ignore", soft_mask_weight: float = 0.1, table_size: int = 8):
        if soft_mask not in ("ignore", "downweight"):
            raise UserError(f"dna soft_mask='{soft_mask}': choose 'ignore' or 'downweight'")
        if table_size < self.vocab_size:
            raise UserError(f"dna table_size={table_size} must be at least {self.vocab_size}")
        self.soft_mask, self.soft_mask_weight, self.table_size = soft_mask, soft_mask_weight, table_size

    # ---- reading ---------------------------------------------------------------------------
    def read_records(self, paths: Iterable[str | Path]) -> Iterator[Record]:
        """Every FASTA record of every file; an empty record is an error."""
        for path in self.expand_inputs(paths):
            for name, seq in fasta.stream(path):
                if not seq:
                    raise UserError(f"{path}: record '{name}' is empty (no sequence after its header)")
                tokens, mask = encode_ascii(seq, f"{path}: record '{name}'")
                yield Record(name, tokens, {"mask": mask, "source": str(path), "contig": name,
                                            "start": 0, "end": len(tokens)})

    def fetch(self, path: str | Path, contig: str, start: int = 0, end: int | None = None,
              strand: str = ".", name: str = "", _handle=None) -> Record:
        """``[start, end)`` of ``contig`` by random access; an all-N region is an error.

        ``contig`` is looked up through its aliases and kept as written (``meta["contig"]``,
        the reference's name is ``meta["ref_contig"]``).  ``strand="-"``: the record holds the
        reverse complement (soft-mask reversed too); ``meta`` keeps the + strand coordinates and
        ``strand`` (``+``, ``-``, or ``.`` when none was given).  The record id is ``name``, else the 1-based region ``contig:start+1-end``.
        """
        fa = _handle or fasta.open_indexed(path)
        lengths = dict(zip(fa.references, fa.lengths))
        ref_name = resolve_contig(contig, lengths)
        if ref_name is None:
            raise UserError(f"{path}: contig '{contig}' is not in this FASTA")
        iv = Interval(contig, start, lengths[ref_name] if end is None else end, name, strand)
        if not 0 <= iv.start < iv.end <= lengths[ref_name]:
            raise UserError(f"{path}: region {iv.region} is outside contig '{ref_name}' "
                            f"(length {lengths[ref_name]})")
        where = f"{path}: region {iv.region}"
        tokens, mask = encode_ascii(fa.fetch(ref_name, iv.start, iv.end), where)
        if (tokens == N_TOKEN).all():
            raise UserError(f"{where} is all N")
        if strand == "-":
            tokens, mask = self.reverse_complement(tokens), mask[::-1].copy()
        return Record(name or iv.region, np.ascontiguousarray(tokens),
                      {"mask": mask, "source": str(path), "contig": contig, "ref_contig": ref_name,
                       "start": iv.start, "end": iv.end, "strand": strand})

    def read_regions(self, path: str | Path, regions: str | Path | Iterable[Interval]) -> Iterator[Record]:
        """The records of ``regions`` (a BED file, checked against the FASTA before any is read, or
        :class:`Interval` objects): BED names become record ids, ``-`` intervals are reverse-complemented."""
        fa = fasta.open_indexed(path)
        if isinstance(regions, (str, Path)):
            regions = read_bed(regions, dict(zip(fa.references, fa.lengths)), reference=str(path))
        for iv in regions:
            yield self.fetch(path, iv.contig, iv.start, iv.end, iv.strand, iv.name, _handle=fa)

    def contig_lengths(self, path: str | Path) -> dict[str, int]:
        fa = fasta.open_indexed(path)
        return dict(zip(fa.references, fa.lengths))

    def record_from(self, value, id: str) -> Record:
        """A DNA string (soft-mask kept) or a token array."""
        if isinstance(value, (str, bytes)):
            tokens, mask = encode_ascii(value, f"sequence '{id}'")
            return Record(id, tokens, {"mask": mask})
        return Record(id, np.asarray(value, np.uint8), {})

    def text_record(self, text: str | bytes, id: str = "sequence", where: str = "text") -> Record:
        """Bases typed as text; whitespace (line breaks of a pasted sequence) is dropped."""
        text = text.decode() if isinstance(text, bytes) else text
        return Record(id, encode_ascii("".join(text.split()), where)[0], {})

    def prompt_tokens(self, prompt: str | bytes) -> np.ndarray:
        tokens = super().prompt_tokens(prompt)
        if len(tokens) == 0:
            raise UserError("prompt: a DNA model needs at least one base")
        return tokens

    def text_of(self, tokens: np.ndarray) -> str:
        return decode_tokens(tokens)

    # ---- tensors ---------------------------------------------------------------------------
    def encode(self, record: Record) -> torch.Tensor:
        """``(L,) int64`` tokens."""
        return torch.from_numpy(record.data.astype(np.int64))

    def decode(self, encoded, meta: dict | None = None) -> str:
        """Tokens -> sequence string, lowercase restored from ``meta["mask"]``."""
        return decode_tokens(encoded, None if meta is None else meta.get("mask"))

    def example_arrays(self, record: Record) -> dict[str, np.ndarray]:
        weights = np.ones(len(record.data), np.float32)
        if self.soft_mask == "downweight" and "mask" in record.meta:
            weights[record.meta["mask"]] = self.soft_mask_weight
        return {"inputs": record.data, "targets": record.data, "weights": weights}

    reverse_complement = staticmethod(reverse_complement)  # used by RC augmentation


__all__ = ["DNAAdapter", "decode_tokens", "encode_ascii", "reverse_complement"]
