"""Options that several commands share, declared once as ``Annotated`` types.

A command writes ``checkpoint: Checkpoint`` (required) or ``window: Window = 8192``; the
default stays in the command's signature, beside the options that are its own.  A help text
here names only flags that every command using the option has.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CHECKPOINT_HELP = ("Checkpoint directory, or a training run directory (its latest checkpoint), or an "
                   "official .pt (then --config, unless its name is a packaged config's, e.g. "
                   "hnet_2stage_L.pt), or a Hugging Face Hub repo id (cartesia-ai/hnet_2stage_L).")

Checkpoint = Annotated[Path, typer.Option("--checkpoint", help=CHECKPOINT_HELP)]
Config = Annotated[Path, typer.Option("--config", help="JSON config of an official .pt checkpoint (e.g. "
                                      "configs/hnet_2stage_L.json).")]
Modality = Annotated[str, typer.Option("--modality", help="Override the checkpoint's modality (official .pt: bytes).")]
Region = Annotated[str, typer.Option("--region", help="One region CONTIG:START-END of --reference, 1-based "
                                     "inclusive as in samtools (chr1:1001-2000 is BED chr1 1000 2000).")]
Reference = Annotated[Path, typer.Option("--reference", help="Reference FASTA (plain or bgzip) that --region "
                                         "(or a BED file) refers to.")]
Window = Annotated[int, typer.Option("--window", help="Tile length (positions) for long sequences.")]
Overlap = Annotated[int, typer.Option("--overlap", help="Left context given to every tile after the first "
                                      "(default: window/4, at most 1024); its positions are taken from the "
                                      "previous tile.")]
BatchTokens = Annotated[int, typer.Option("--batch-tokens", help="Positions per packed batch "
                                          "(default 65536 on GPU, 8192 on CPU).")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")]
Precision = Annotated[str, typer.Option("--precision", help="auto (bf16 on CUDA), float32 or bfloat16.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
