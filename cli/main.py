"""The ``hnet-seq`` command line: thin Typer commands over the Python API.

Each command lives in its own module of this package and is registered here.  User mistakes
(:class:`hnet_seq.errors.UserError`) print one line and exit with status 2.
"""
from __future__ import annotations

import functools
from typing import Callable

import typer
from typer.core import TyperCommand, TyperGroup

from hnet_seq import __version__
from hnet_seq.errors import UserError

# The --checkpoint help of every command that loads a model.
CHECKPOINT_HELP = ("Checkpoint directory, or a training run directory (its latest checkpoint), or an "
                   "official .pt (then --config, unless its name is a packaged config's, e.g. "
                   "hnet_2stage_L.pt), or a Hugging Face Hub repo id (cartesia-ai/hnet_2stage_L).")


class _HelpAsWritten:
    """Help shown as written: ``[bracketed]`` text is not Rich markup (it was swallowed: the
    score-variants convention lost ``[p+m:S+W]``), and flags show no ``<bool>`` value type."""

    def __init__(self, *args, **kwargs):
        from rich.markup import escape

        super().__init__(*args, **kwargs)
        self.help = escape(self.help) if self.help else self.help
        for p in self.params:
            if getattr(p, "help", None):
                p.help = escape(p.help)

    def get_params(self, ctx):
        params = super().get_params(ctx)  # includes --help, made per call
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class HelpCommand(_HelpAsWritten, TyperCommand):
    pass


class HelpGroup(_HelpAsWritten, TyperGroup):
    pass


app = typer.Typer(
    name="hnet-seq",
    cls=HelpGroup,
    help="H-Net (dynamic chunking) models for DNA, UTF-8 bytes and audio.\n\n"
    "Train on FASTA, text or audio; embed sequences with per-chunk coordinates; score sequences "
    "and genetic variants. Run 'hnet-seq COMMAND --help' for each command's options.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hnet-seq {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    kernels: str = typer.Option(None, "--kernels", envvar="HNET_SEQ_KERNELS",
                                help="Kernel backends: auto (default), reference, fast, or per op "
                                "e.g. 'ssd=reference,attention=fast'."),
) -> None:
    """Options shared by every command."""
    if kernels:
        import os

        os.environ["HNET_SEQ_KERNELS"] = kernels


def user_errors_as_one_line(fn: Callable) -> Callable:
    """Turn a :class:`UserError` (or a missing file) into ``error: …`` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except FileNotFoundError as e:
            typer.secho(f"error: {e.filename}: no such file", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return wrapper


def command(name: str):
    """Register ``fn`` as ``hnet-seq NAME`` with the one-line error handling."""

    def decorate(fn: Callable) -> Callable:
        app.command(name, cls=HelpCommand)(user_errors_as_one_line(fn))
        return fn

    return decorate


def _register_commands() -> None:
    # Importing a command module registers its commands through `command`; the order here is
    # the order of `hnet-seq --help`.
    from hnet_seq.cli import (chunks, embed, generate, info, plot, score, score_variants,  # noqa: F401
                              shard, train)


_register_commands()
