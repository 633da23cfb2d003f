"""``hnet-seq train``: a thin command over :func:`hnet_seq.train.train`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hnet_seq.cli.main import as_flags, command

EXAMPLES = """
Examples:

  # First run: a tiny DNA H-Net on the genome shipped with the package (CPU)
  hnet-seq train --config dna-tiny

  # Your own FASTA (plain, gzip or bgzip; folders are searched)
  hnet-seq train -c dna-tiny --data genome.fa.gz --data more/ --out runs/mine

  # Change any config field from the command line
  hnet-seq train -c dna-tiny --set optim.lr=2e-3 --set data.seq_len=1024

  # Continue a stopped run (Ctrl-C, a crash, or more --steps) exactly
  hnet-seq train --out runs/dna-tiny --resume --steps 1000

  # Several GPUs: DDP (or --set train.parallel=fsdp for FSDP2)
  torchrun --nproc_per_node 2 -m hnet_seq.cli train -c dna-paper-1stage --data hg38.fa.gz

Presets (a name, or give a YAML/JSON path): {presets}.

RUN_DIR gets metrics.jsonl, run_config.json and checkpoints/step_N/ + checkpoints/latest
(model.safetensors, config.json, modality.json, train_state.pt). Plot with 'hnet-seq plot RUN_DIR'.
Exit status: 0 done, 2 bad input, 3 NaN/inf loss (stopped), 130 interrupted (checkpoint saved).
"""


def _presets() -> str:
    try:
        from hnet_seq.train.config import list_presets

        return ", ".join(list_presets()) or "none"
    except Exception:  # the help text must never fail
        return "see configs/"


def _train_help() -> str:
    return ("Train an H-Net (dynamic chunking) on DNA, UTF-8 bytes or audio.\n\n"
            "Loss: the modality's NLL (reported in bits per base/byte/sample) plus the ratio loss that keeps "
            "each stage's compression near its target.\n" + EXAMPLES.replace("{presets}", _presets()))


def train_command(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Run config: a preset name (dna-tiny, "
                                         "dna-paper-1stage, bytes-1stage, bytes-2stage, audio) or a YAML/JSON "
                                         "path. Optional with --resume (the run's own config is used)."),
    data: Optional[List[str]] = typer.Option(None, "--data", help="Training data: files, folders or webdataset "
                                             "shards (.tar, brace patterns); repeatable. Default: the config's "
                                             "data.paths, else the shipped genome (DNA)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: runs/<config name>)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total optimizer steps (train.steps)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (train.device)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field, e.g. "
                                             "--set optim.lr=1e-3 --set model.d_model=[64,96]; repeatable."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (metrics are still written)."),
) -> None:
    from hnet_seq.errors import UserError
    from hnet_seq.train import NonFiniteLoss, TrainingInterrupted, load_run_config, train
    from hnet_seq.train.loop import RUN_CONFIG

    overrides = list(set_ or [])
    if steps is not None:
        if steps <= 0:
            raise UserError(f"--steps {steps}: must be a positive number of steps")
        overrides.append(f"train.steps={steps}")
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise UserError(f"--device {device}: choose auto, cpu or cuda")
        overrides.append(f"train.device={device}")
    if config is None:
        if not (resume and out is not None and (out / RUN_CONFIG).exists()):
            raise UserError("give --config (a preset such as dna-tiny, or a file); only --resume --out RUN_DIR "
                            "may omit it")
        config = str(out / RUN_CONFIG)
    cfg = load_run_config(config, overrides)
    if out is None:
        out = Path("runs") / Path(config).name.split(".")[0]
    try:
        result = train(cfg, out, resume=resume, data_paths=list(data) if data else None, quiet=quiet)
    except TrainingInterrupted as e:
        if not e.is_main:
            raise typer.Exit(130) from None
        typer.secho(f"stopped: {as_flags(e)}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    except NonFiniteLoss as e:
        typer.secho(f"error: {as_flags(e)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(3) from None
    if quiet or result.rank != 0:
        return
    unit = result.unit
    minutes, seconds = divmod(int(round(result.elapsed_s)), 60)
    parts = [f"done: {result.step} steps in {minutes}m{seconds:02d}s"]
    if result.heldout_bits_per_unit is not None:
        start = (f" (from {result.first_heldout_bits_per_unit:.3f} at step 0)"
                 if result.first_heldout_bits_per_unit is not None else "")
        parts.append(f"held-out {result.heldout_bits_per_unit:.3f} bits/{unit}{start}")
        if result.heldout_unscored:
            parts.append(f"{result.heldout_unscored} held-out N positions not scored")
    if result.checkpoint is not None:
        parts.append(f"checkpoint: {result.checkpoint}")
    typer.echo("; ".join(parts), err=True)


train_command.__doc__ = _train_help()
command("train")(train_command)
