"""The ``hnet-seq`` command line: thin Typer commands over the Python API.

Each command lives in its own module of this package and is registered here.  User mistakes
(:class:`hnet_seq.errors.UserError`) print one line and exit with status 2.  SIGTERM and SIGHUP
are handled like Ctrl-C: they raise :class:`hnet_seq.errors.Interrupted` (a KeyboardInterrupt)
in the main thread, so the writers' cleanup runs (no temporary file or partial folder is left),
and the command exits with 128 + the signal number after one line.
"""
from __future__ import annotations

import contextlib
import functools
import re
import signal
import sys
from typing import Callable

import typer
from typer.core import TyperCommand, TyperGroup

from hnet_seq import __version__
from hnet_seq.errors import Interrupted, UserError

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
    if kernels:  # else the kernels read $HNET_SEQ_KERNELS at their first call (and no torch loads here)
        from hnet_seq import kernels as ops  # the ops register on import, so the spec can name them

        try:
            ops.set_spec(kernels)
        except ValueError as e:
            _fail(f"--kernels {kernels}: {e}")


# OS errors whose ``filename`` is the user's path (the message names it): an unwritable output,
# a directory given for a file, a file in the way of a folder.
PATH_ERRORS = (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts():
    """SIGTERM and SIGHUP raise :class:`Interrupted` like SIGINT does (main thread only)."""
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _raise_interrupted)
    except ValueError:  # not the main thread (e.g. a test runner's worker): no handlers
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# The flag of a Python parameter, where it is not ``--`` + the name with ``-`` for ``_``.
FLAG_OF_PARAM = {"prompt_wav": "--audio-prompt",
                 "run_dir": "--out", "out_dir": "--out", "data_paths": "--data", "overrides": "--set"}


def as_flags(e: UserError) -> str:
    """The message with each parameter it names (``e.params``) written as its flag:
    ``window=1`` -> ``--window 1``, ``rc_average`` -> ``--rc-average``."""
    text = str(e)
    for name in e.params:
        flag = FLAG_OF_PARAM.get(name, "--" + name.replace("_", "-"))
        # a whole word only: not part of a path, a file name or another name
        text = re.sub(rf"(?<![\w./-]){name}=True\b", flag, text)  # a switch: ``resume=True`` -> ``--resume``
        text = re.sub(rf"(?<![\w./-]){name}=", flag + " ", text)
        text = re.sub(rf"(?<![\w./-]){name}(?![\w./=-])", flag, text)
    return text


def user_errors_as_one_line(fn: Callable) -> Callable:
    """Turn a :class:`UserError` (or an OS error on a named path) into ``error: …`` and exit
    status 2; an interrupt (Ctrl-C, SIGTERM, SIGHUP) into one line and 128 + its number.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with signals_as_interrupts():
                return fn(*args, **kwargs)
        except UserError as e:
            _fail(as_flags(e))
        except FileNotFoundError as e:
            if e.filename is None:
                raise
            _fail(f"{e.filename}: no such file")
        except PATH_ERRORS as e:
            if e.filename is None:
                raise
            _fail(f"{e.filename}: {e.strerror or e}")
        except KeyboardInterrupt as e:
            from hnet_seq.runtime.atomic import remove_temporaries

            remove_temporaries()  # what an interrupt caught between creating and owning a file
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            typer.secho(f"interrupted ({signal.Signals(signum).name}): no output written", fg=typer.colors.YELLOW,
                        err=True)
            raise typer.Exit(128 + signum) from None
        finally:
            _leave_process_group()

    return wrapper


def _leave_process_group() -> None:
    """Leave torchrun's process group if the command joined one, before the process exits: a gloo
    group left to the interpreter's teardown once aborted a rank whose output was already written
    ("terminate called without an active exception", exit -6, in CI's torchrun embed test)."""
    if "torch.distributed" in sys.modules:  # else nothing joined one, and torch need not load
        from hnet_seq.runtime.distributed import shutdown

        shutdown()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2) from None


def check_positive(value, flag: str, allow_zero: bool = False):
    """``value`` unless it is below 1 (``allow_zero``: below 0); ``None`` passes (a default)."""
    if value is not None and (value < 0 if allow_zero else value <= 0):
        raise UserError(f"{flag} {value}: must be {'zero or more' if allow_zero else 'positive'}")
    return value


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` if torch can use it on this machine (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"{flag} {device}: not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{flag} {device}: CUDA is not available on this machine (use {flag} cpu)")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"{flag} {device}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{flag} {device}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{flag} {device}: torch cannot run on {dev.type} here (use cpu or cuda)")
    return device


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
