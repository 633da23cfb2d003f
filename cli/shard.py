"""``hnet-seq shard``: read FASTA / text / audio once and write webdataset ``.tar`` shards."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import check_positive, command


def parse_options(pairs: list[str]) -> dict:
    """``["sample_rate=8000", "soft_mask=downweight"]`` -> typed dict (YAML scalars)."""
    import yaml

    from hnet_seq.errors import UserError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair}: expected KEY=VALUE, e.g. --set sample_rate=8000")
        options[key.strip()] = yaml.safe_load(value)
    return options


@command("shard")
def shard(
    inputs: list[Path] = typer.Argument(..., help="Input files or directories (walked recursively).",
                                        show_default=False),
    modality: str = typer.Option(..., "--modality", "-m", help="dna (FASTA, plain/gzip/bgzip), "
                                 "bytes (text files, JSONL) or audio (wav/flac/ogg)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory; must not exist or be empty."),
    max_shard_mb: float = typer.Option(256.0, "--max-shard-mb", help="Start a new shard after this many MB."),
    option: list[str] = typer.Option([], "--set", help="Modality option KEY=VALUE (repeatable), e.g. "
                                     "sample_rate=8000, text_field=content, soft_mask=downweight."),
) -> None:
    """Write records as webdataset .tar shards (tokens/samples .npy + metadata .json).

    Each record (FASTA record, text file, JSONL line or audio file) is one sample.

    Its files: KEY.tokens.npy (audio: KEY.samples.npy), KEY.mask.npy (DNA soft-mask), KEY.json (id, source...).

    Output appears only once every input was read (written to a temporary folder, then renamed).

    Examples:

      hnet-seq shard --modality dna ../shared/data/dna/*.fna.gz --out shards/klebsiella

      hnet-seq shard -m bytes ../shared/data/text/udhr2 --out shards/udhr --max-shard-mb 2

      hnet-seq shard -m bytes corpus.jsonl --set text_field=content --set lang_field=language -o shards/c

      hnet-seq shard -m audio ../shared/data/audio --set sample_rate=16000 -o shards/speech

    Read them back in Python with hnet_seq.data.read_shards("shards/udhr", shuffle_buffer=1000).
    """
    from hnet_seq.data.shards import check_output_dir, write_shards
    from hnet_seq.modalities import get_adapter
    from hnet_seq.progress import progress_bar

    check_positive(max_shard_mb, "--max-shard-mb")
    adapter = get_adapter(modality, **parse_options(option))
    files = adapter.expand_inputs(inputs)
    check_output_dir(out)  # before the progress bar starts
    records = 0
    with progress_bar(True, f"shard {out}", total=len(files), unit="files") as bar:

        def advance(path: Path, n: int) -> None:
            nonlocal records
            records += n
            bar.advance(1)

        shards = write_shards(adapter, files, out, int(max_shard_mb * (1 << 20)), progress=advance)
    size = sum(p.stat().st_size for p in shards)
    typer.echo(f"{records} records from {len(files)} files -> {len(shards)} shards "
               f"({size / 1e6:.1f} MB) in {out}")
