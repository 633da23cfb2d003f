"""The library speaks its Python API: no error raised outside ``cli/`` names a command-line flag.

A notebook caller of ``hnet_seq.inference.embed(window=...)`` should read ``window``, not
``--window``; the CLI rewrites the parameters a ``UserError`` names (``params``) as its flags
(``cli.main.as_flags``).  The check walks the source of every library module: string constants
(f-string parts included) inside ``raise`` statements and ``...Error``/``...Exception`` calls.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = [ROOT / "hnet_seq", ROOT / "modalities"]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _error_strings(tree: ast.AST):
    """``(line, text)`` of the string constants in raises and error constructors of ``tree``
    (each once: ``raise ValueError(...)`` is both)."""
    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            roots = [node.exc]
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            roots = [node] if name.endswith(("Error", "Exception")) else []
        else:
            roots = []
        for root in roots:
            for sub in ast.walk(root):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in seen:
                    seen.add(id(sub))
                    yield sub.lineno, sub.value


def flag_mentions(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line: --flag`` for every flag named in an error of the module at ``path``."""
    out = []
    for line, text in _error_strings(ast.parse(path.read_text(), str(path))):
        out += [f"{path.relative_to(root)}:{line}: {m}" for m in FLAG.findall(text)]
    return out


def test_no_library_error_names_a_flag():
    found = [hit for folder in LIBRARY for path in sorted(folder.rglob("*.py")) for hit in flag_mentions(path)]
    assert not found, "library errors that name CLI flags:\n" + "\n".join(sorted(set(found)))


def test_the_check_sees_flags_in_raises_and_error_constructors(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('def f(n):\n    if n:\n        raise ValueError(f"bad {n}: use --window 1")\n'
                      '    err = RegionError("see --region")\n    return "--not-an-error"\n')
    hits = [h.rsplit(": ", 1)[1] for h in flag_mentions(sample, tmp_path)]
    assert hits == ["--window", "--region"]
