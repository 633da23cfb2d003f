"""``hnet-seq info``: what a config (or a checkpoint's config) builds, and which kernels run."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hnet_seq.cli.main import check_device, command


@command("info")
def info(
    config: Path = typer.Option(None, "--config", "-c", help="Model config: a packaged name (hnet_2stage_XL; "
                                "see --list-configs), an official goombalab JSON, our JSON/YAML, or a run's config."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A checkpoint directory written by "
                                    "'hnet-seq train', or its run directory (its latest checkpoint); "
                                    "its config.json is used."),
    device: str = typer.Option(None, help="Device whose kernel backends to report (default: cuda if "
                               "available, else cpu)."),
    list_configs: bool = typer.Option(False, "--list-configs", help="List the packaged model configs and "
                                      "training presets, then exit."),
) -> None:
    """Print the hierarchy, parameters per stage and kernel backends, without allocating weights.

    Examples:

      hnet-seq info --config hnet_2stage_XL

      hnet-seq info --list-configs

      hnet-seq info --checkpoint runs/dna-tiny/checkpoints/latest
    """
    from hnet_seq.checkpoint import resolve_checkpoint
    from hnet_seq.config import load_config
    from hnet_seq.errors import UserError
    from hnet_seq.hub import packaged_configs, resolve_config
    from hnet_seq.summary import kernel_backends, summarize
    from hnet_seq.train.config import list_presets

    if list_configs:
        typer.echo("model configs (--config NAME): " + " ".join(packaged_configs()))
        typer.echo("training presets (hnet-seq train --config NAME): " + " ".join(list_presets()))
        return
    if (config is None) == (checkpoint is None):
        raise UserError("give exactly one of --config or --checkpoint")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    path = resolve_config(config) if config is not None else resolve_checkpoint(checkpoint) / "config.json"
    cfg = load_config(path)
    stages, backbone, total = summarize(cfg)
    console = Console()
    table = Table(title=f"{path}  ({cfg.num_stages - 1}-stage H-Net, vocab {cfg.vocab_size})")
    for col in ("stage", "d_model", "encoder", "main", "decoder", "target ratio", "params"):
        table.add_column(col, justify="right" if col in ("stage", "d_model", "params") else "left")
    for s in stages:
        table.add_row(str(s.stage), str(s.d_model), s.encoder or "", s.main or "", s.decoder or "",
                      "" if s.target_compression is None else f"{s.target_compression:g}", f"{s.params:,}")
    console.print(table)
    console.print(f"backbone parameters: {backbone:,}   total (with embedding and head): {total:,}")
    kernels = Table(title=f"kernel backends on {device}")
    kernels.add_column("op")
    kernels.add_column("backend")
    for op, desc in kernel_backends(device).items():
        kernels.add_row(op, desc)
    console.print(kernels)
