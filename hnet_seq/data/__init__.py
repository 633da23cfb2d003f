"""Data pipeline: regions and splits, corpora and windows, packing, datasets, shards.

Everything modality-specific goes through a :class:`hnet_seq.modalities.ModalityAdapter`.
"""
from .corpus import Corpus
from .dataset import WindowDataset
from .packing import Example, make_example, pack_examples, plan_batches, stream_batches
from .record import Record
from .regions import (Interval, Split, contig_aliases, overlapping, read_bed, resolve_contig,
                      split_by_record, split_by_region, tile)
from .shards import expand_shards, read_shards, write_shards

__all__ = ["Corpus", "Example", "Interval", "Record", "Split", "WindowDataset", "contig_aliases", "expand_shards",
           "make_example", "overlapping", "pack_examples", "plan_batches", "read_bed", "read_shards",
           "resolve_contig", "split_by_record", "split_by_region", "stream_batches", "tile", "write_shards"]
