"""``hnet-seq info`` on CPU: official XL config summarised on the meta device, bad configs named."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hnet_seq.cli.main import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_info_summarises_xl_config_without_weights():
    result = CliRunner().invoke(app, ["info", "--config", str(CONFIGS / "hnet_2stage_XL.json")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "T1m4" in out and "T27" in out and "m4T1" in out
    assert "2048" in out and "1,603,492,224" in out
    for op in ("ssd", "conv1d", "attention", "rmsnorm"):
        assert op in out


def test_malformed_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"arch_layout": ["m4", ["T22"], "m4"], "d_model": [1024, 1536], "window": 3}')
    proc = subprocess.run([sys.executable, "-m", "hnet_seq.cli", "info", "--config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown field 'window'" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unparsable_config_names_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("d_model: [64\n")
    result = CliRunner().invoke(app, ["info", "--config", str(bad)])
    assert result.exit_code == 2
    assert "broken.yaml" in result.output
