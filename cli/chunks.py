"""``hnet-seq chunks``: show where the model puts chunk boundaries at every stage."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import command
from hnet_seq.cli.options import Checkpoint, Config, Device, Modality, Overlap, Reference, Region, Window
from hnet_seq.errors import UserError


@command("chunks")
def chunks(
    inputs: list[Path] = typer.Argument(None, help="FASTA or text files (every record is shown); or use "
                                        "--sequence, or --region with --reference.", show_default=False),
    checkpoint: Checkpoint = ...,
    config: Config = None,
    modality: Modality = None,
    sequence: str = typer.Option(None, "--sequence", "-s", help="A DNA sequence or a text, given inline."),
    region: Region = None,
    reference: Reference = None,
    record: str = typer.Option(None, "--record", help="Only the input record with this id."),
    html: Path = typer.Option(None, "--html", help="Write a self-contained HTML page (colour bands per "
                              "stage; hover for probabilities)."),
    png: Path = typer.Option(None, "--png", help="Write a PNG track plot of boundary density per stage."),
    annotations: Path = typer.Option(None, "--annotations", help="BED (.bed or .bed.gz) of features drawn as an "
                                     "extra track of the PNG."),
    bin_size: int = typer.Option(None, "--bin", help="PNG bin size in units (default: length/200)."),
    window: Window = 8192,
    overlap: Overlap = None,
    device: Device = None,
) -> None:
    """Chunk boundaries per stage: HTML page, PNG tracks, or colours in the terminal (default).

    Examples:

      hnet-seq chunks --checkpoint CK --sequence ACGTTGCATTGACCGGTA

      hnet-seq chunks --checkpoint CK --region NC_016833.1:40,001-60,000 --reference plasmids.fa \\
          --png region.png --annotations genes.bed --html region.html

      hnet-seq chunks --checkpoint hnet_2stage_L.pt --config configs/hnet_2stage_L.json \\
          --sequence "Hello, world" --html hello.html
    """
    from hnet_seq.inference.chunk_views import plot_tracks, render_html, render_terminal
    from hnet_seq.inference.chunks import boundary_tracks
    from hnet_seq.inference.model import load
    from hnet_seq.inference.outputs import check_output_path

    given = sum(x is not None and x != [] for x in (inputs or None, sequence, region))
    if given != 1:
        raise UserError("give exactly one of: input files, --sequence, or --region (with --reference)")
    for path, param in ((html, "html"), (png, "png")):
        if path is not None:
            check_output_path(path, param)
    im = load(checkpoint, config, device=device, modality=modality)
    records = _records(im.adapter, inputs, sequence, region, reference, record)
    tracks = boundary_tracks(im, records, window=window, overlap=overlap)
    rate = im.adapter.sample_rate
    if html is not None:
        render_html(tracks, html, title=f"H-Net chunks: {checkpoint.name}", sample_rate=rate)
        typer.echo(f"wrote {html}", err=True)
    if png is not None:
        if len(tracks) > 1:
            raise UserError("--png draws one sequence: pick it with --record or --region")
        plot_tracks(tracks[0], png, bin_size=bin_size, annotations=annotations, sample_rate=rate)
        typer.echo(f"wrote {png}", err=True)
    elif annotations is not None:
        raise UserError("--annotations is a track of --png: give --png too")
    if html is None and png is None:
        for t in tracks:
            render_terminal(t)


def _records(adapter, inputs, sequence: str | None, region: str | None, reference, record: str | None) -> list:
    """The records to show: the inline --sequence, the --region of --reference, or the inputs'
    records (only ``record`` if given)."""
    from hnet_seq.inference.records import iter_records

    if sequence is not None:
        return [_inline_record(adapter, sequence)]
    if region is not None:
        return list(iter_records(adapter, region=region, reference=reference))
    records = [r for r in iter_records(adapter, inputs) if record is None or r.id == record]
    if not records:
        raise UserError(f"--record {record}: no such record in the inputs")
    return records


def _inline_record(adapter, sequence: str):
    """--sequence as a record, in the modality's text form (DNA bases, or UTF-8 bytes)."""
    return adapter.text_record(sequence, "sequence", where="--sequence")
