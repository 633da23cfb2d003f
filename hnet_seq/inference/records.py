"""Read input records: :func:`iter_records` streams :class:`~hnet_seq.modalities.Record` objects from FASTA,
BED + reference FASTA, text / JSONL, audio files or ``.tar`` shards, whichever the modality reads;
:func:`input_total` and :func:`vcf_record_count` size them for a progress bar.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from hnet_seq.errors import UserError


def iter_records(adapter, inputs: Sequence[str | Path] = (), *, bed: str | Path | None = None,
                 region: str | None = None, reference: str | Path | None = None,
                 shards: bool | None = None) -> Iterator:
    """Records to process, in input order (arguments are checked now, files read lazily).

    * ``bed`` or ``region`` (``CONTIG:START-END``, 1-based inclusive) + ``reference``: one
      record per interval (DNA; ``meta["contig"/"start"/"end"/"strand"]`` hold the user's
      contig name and + strand coordinates; see :mod:`hnet_seq.data.regions`);
    * ``inputs`` that are ``.tar`` shards (or ``shards=True``): records read back from shards;
    * otherwise the adapter reads the files (FASTA records, text files / JSONL lines, audio).
    """
    if bed is not None or region is not None:
        return _region_records(adapter, inputs, bed, region, reference)
    if not inputs:
        raise UserError("no inputs: give files (FASTA, text, JSONL, audio, .tar shards), or bed or region "
                        "with reference", params=("bed", "region", "reference"))
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or directory")
    is_shard = [p.suffix == ".tar" or (p.is_dir() and any(p.glob("*.tar"))) for p in paths]
    if shards or (shards is None and all(is_shard)):
        from hnet_seq.data.shards import read_shards

        return read_shards([str(p) for p in paths], modality=adapter.name)
    if any(is_shard):
        raise UserError("mix of .tar shards and other inputs: give one kind at a time")
    return adapter.read_records(paths)


def input_total(inputs: Sequence[str | Path] = (), *, bed: str | Path | None = None, region: str | None = None,
                reference: str | Path | None = None) -> int | None:
    """Bases that DNA inputs hold, when that is cheap to know (a progress bar's total and ETA):
    the sizes of the BED intervals or of the region, or the contig lengths in every FASTA's
    ``.fai``; else None."""
    from hnet_seq.data.regions import parse_region, read_bed

    try:
        if bed is not None:
            return sum(iv.end - iv.start for iv in read_bed(bed))
        if region is not None:
            reference = reference if reference is not None or len(inputs) != 1 else inputs[0]
            lengths = _fai_lengths(reference) if reference is not None else None
            iv = parse_region(region, lengths, str(reference)) if lengths else None
            return iv.end - iv.start if iv else None
    except (UserError, OSError, ValueError):  # reported as it should be when the records are read
        return None
    total = 0
    for p in inputs:
        lengths = _fai_lengths(p)
        if lengths is None:
            return None
        total += sum(lengths.values())
    return total or None


def records_and_total(adapter, inputs: Sequence[str | Path], *, bed=None, region=None, reference=None,
                      with_total: bool = False) -> tuple[Iterator, int | None]:
    """:func:`iter_records` and, with ``with_total`` (a progress bar will show), :func:`input_total`."""
    records = iter_records(adapter, inputs, bed=bed, region=region, reference=reference)
    total = input_total(inputs, bed=bed, region=region, reference=reference) if with_total else None
    return records, total


def _fai_lengths(path: str | Path) -> dict[str, int] | None:
    """Contig lengths from the ``.fai`` beside a FASTA (None without one)."""
    fai = Path(f"{path}.fai")
    if not (Path(path).is_file() and fai.is_file()):
        return None
    with open(fai) as f:
        return {cols[0]: int(cols[1]) for cols in (line.split("\t") for line in f) if len(cols) > 1}


def vcf_record_count(path: str | Path) -> int | None:
    """Records in a VCF/BCF (one quick pysam pass; records are not decoded), or None if unreadable."""
    import pysam

    verbosity = pysam.set_verbosity(0)  # its header warnings are shown once, by the real pass
    try:
        with pysam.VariantFile(str(path)) as vf:
            return sum(1 for _ in vf)
    except (OSError, ValueError):
        return None
    finally:
        pysam.set_verbosity(verbosity)


def _region_records(adapter, inputs, bed, region, reference) -> Iterator:
    """Records of a BED file or one region of ``reference``; every interval is checked first."""
    from hnet_seq.data.regions import parse_region, read_bed

    name = "bed" if region is None else "region"
    if bed is not None and region is not None:
        raise UserError("give bed or region, not both", params=("bed", "region"))
    if region is not None and reference is None and len(inputs) == 1:  # score(ck, ["genome.fa"], region="chr1:1-1000")
        # as in `samtools faidx genome.fa chr1:1-1000`: the one input is the reference
        reference, inputs = inputs[0], ()
    if reference is None:
        raise UserError(f"{name} needs reference (the FASTA the intervals refer to)", params=(name, "reference"))
    if not hasattr(adapter, "read_regions"):
        raise UserError(f"{name}: the {adapter.name} modality has no genomic regions (use dna)", params=(name,))
    if inputs:
        raise UserError(f"give either input files or {name} with reference, not both", params=(name, "reference"))
    if not Path(reference).exists():
        raise UserError(f"reference={reference}: no such file", params=("reference",))
    lengths = adapter.contig_lengths(reference)
    if region is not None:
        intervals = [parse_region(region, lengths, str(reference))]
    else:
        if not Path(bed).exists():
            raise UserError(f"bed={bed}: no such file", params=("bed",))
        intervals = read_bed(bed, lengths, str(reference))
    return adapter.read_regions(reference, intervals)
