"""tools/copy_sections.py: device-written sections replace their namesakes in the docs, nothing else."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import copy_sections  # noqa: E402


def test_sections_replace_their_namesakes_and_the_rest_stays(tmp_path):
    src, docs = tmp_path / "device.md", tmp_path / "benchmarks.md"
    src.write_text("# Benchmarks\n\n<!-- a:begin -->\nnew a\n| 1 |\n<!-- a:end -->\n\n<!-- b:begin -->\nnew b\n<!-- b:end -->\n")
    docs.write_text("# Benchmarks\n\nintro\n\n<!-- a:begin -->\nold a\n<!-- a:end -->\n\noutro\n")
    assert copy_sections.main([str(src), "--into", str(docs)]) == 0
    assert docs.read_text() == ("# Benchmarks\n\nintro\n\n<!-- a:begin -->\nnew a\n| 1 |\n<!-- a:end -->\n\noutro\n\n"
                                "<!-- b:begin -->\nnew b\n<!-- b:end -->\n")


def test_only_names_a_missing_section_and_changes_nothing(tmp_path, capsys):
    src, docs = tmp_path / "device.md", tmp_path / "benchmarks.md"
    src.write_text("<!-- a:begin -->\nx\n<!-- a:end -->\n")
    docs.write_text("keep\n")
    assert copy_sections.main([str(src), "--into", str(docs), "--only", "a,zz"]) == 2
    assert "--only zz" in capsys.readouterr().err and docs.read_text() == "keep\n"
