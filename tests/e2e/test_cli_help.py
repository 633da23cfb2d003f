"""``hnet-seq --help`` and every command's help: light to start, and saying what the options are."""
from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from hnet_seq.cli.main import app

COMMANDS = ["chunks", "embed", "generate", "info", "plot", "score", "score-variants", "shard", "train"]
WIDE = {"COLUMNS": "240", "TERM": "dumb"}  # no wrapping inside bracketed text


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_import_does_not_load_heavy_libraries():
    # `hnet-seq --help` must start fast: torch (about 2 s), pysam and pyarrow load only in commands.
    code = ("import sys, hnet_seq.cli.main; "
            "print(' '.join(m for m in ('torch', 'pysam', 'pyarrow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_version_flag_prints_the_installed_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hnet-seq {importlib.metadata.version('hnet-seq')}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_only_real_options_and_no_bool_placeholders(command):
    text = _help(command)
    assert "<bool>" not in text
    click_cmd = typer.main.get_command(app).commands[command]
    real = {o for p in click_cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    # every --option the help mentions (its own examples included) exists; torchrun's are torchrun's
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text)) - {"--nproc-per-node", "--nproc_per_node"}
    assert mentioned <= real, f"{command} --help mentions {sorted(mentioned - real)}"


def test_boolean_options_are_on_off_flags():
    text = _help("embed")
    assert "--no-chunks" in text and "--no-rc-average" in text


def test_bracketed_help_text_is_not_eaten_as_markup():
    text = _help("score-variants")
    assert "ref[p+m:S+W]" in text
