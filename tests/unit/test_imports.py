"""The import graph of the package, read from the source with ``ast`` (nothing is imported).

Two rules:

* No cycle among the imports that run when a module is first imported: module-level and
  class-level statements, plus the ``__init__`` of every package a target lies in (importing
  ``a.b.c`` runs ``a/b/__init__.py`` first).  Imports inside a function body run later, when
  the function is called and every module is already loaded, so they cannot deadlock a first
  import; the first check leaves them out, the second counts them too (a lazy import should keep
  torch or pysam out of ``import hnet_seq``, not hide a loop), with two named exceptions: the
  CLI's command registration, and ``HNetLM``'s Hub methods calling the checkpoint module.  ``if TYPE_CHECKING:`` blocks never run.
* Inference and training stay apart: no module of ``hnet_seq.inference`` reaches
  ``hnet_seq.train`` or the other way round, directly or through other modules, lazy imports
  included.

Folders map to import names as ``pyproject.toml``'s ``package-dir`` says: ``hnet_seq/`` is
``hnet_seq``, ``modalities/`` is ``hnet_seq.modalities``, ``cli/`` is ``hnet_seq.cli``.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _package_dirs() -> dict[str, Path]:
    """Import name -> folder of every code package that pyproject maps (config data left out)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items() if (ROOT / folder / "__init__.py").exists()}


def _modules() -> dict[str, Path]:
    """Every module's dotted name -> its file (a package is its ``__init__.py``)."""
    dirs = _package_dirs()
    out = {}
    for name, folder in dirs.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in rel):
                continue
            parts = list(rel[:-1]) if rel[-1] == "__init__" else list(rel)
            dotted = ".".join([name, *parts])
            # a sub-folder mapped elsewhere (modalities/, cli/) is found under its own name only
            if not any(other != name and other.startswith(name + ".") and dotted.startswith(other)
                       for other in dirs):
                out[dotted] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """``(node, lazy)`` for every import statement; ``lazy``: inside a function body."""
    def walk(node, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), lazy)
            else:
                yield from walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.Lambda)))
    yield from walk(tree, False)


def _targets(node, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Our modules that ``node`` (in ``module``) imports: ``from a import b`` is ``a.b`` if that
    is a module, else ``a``."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    out = set()
    for name in names:
        while name and name not in known:  # `import a.b.c` of a non-module attribute: its module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def _graph():
    """``{module: {target: lazy}}``: lazy only when every import of that target is lazy."""
    mods = _modules()
    known = set(mods)
    graph: dict[str, dict[str, bool]] = {m: {} for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, lazy in _imports(tree):
            for target in _targets(node, mod, path.name == "__init__.py", known):
                parts = target.split(".")
                # importing a.b.c first runs a/__init__ and a/b/__init__ (except the importer's own)
                chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
                for t in chain & known:
                    if t != mod and not mod.startswith(t + "."):
                        graph[mod][t] = graph[mod].get(t, True) and lazy
    return graph


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_walk_sees_the_whole_package():
    graph = _graph()
    for name in ("hnet_seq.checkpoint", "hnet_seq.train.loop", "hnet_seq.inference.embed",
                 "hnet_seq.modalities.dna", "hnet_seq.cli.main", "hnet_seq.runtime.distributed"):
        assert name in graph, name
    assert "hnet_seq.data.regions" in graph["hnet_seq.modalities.dna"]  # an absolute import
    assert "hnet_seq.train.checkpointing" in graph["hnet_seq.train.loop"]  # `from . import x`
    assert graph["hnet_seq.train.build"]["hnet_seq.modalities"] is True  # inside _build_model: lazy
    assert graph["hnet_seq.train.build"]["hnet_seq.model"] is False  # module level: eager


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_at_import_time():
    graph = _graph()
    eager = {m: {t for t, lazy in targets.items() if not lazy} for m, targets in graph.items()}
    assert _cycle(eager) is None, " -> ".join(_cycle(eager))


def test_no_import_cycle_counting_lazy_imports_too():
    """Function-local imports only hide a cycle until someone moves them up; count them as well,
    except two: ``cli.main._register_commands`` imports the command modules (which import
    ``cli.main`` for ``app`` and ``command``) once both are defined, to register their commands;
    and ``HNetLM``'s Hub methods (``save_pretrained``/``from_pretrained``) call
    ``hnet_seq.checkpoint``, the one reader and writer of model files, which builds ``HNetLM``."""
    graph = _graph()
    edges = {m: set(targets) for m, targets in graph.items()}
    edges["hnet_seq.cli.main"] = {t for t in edges["hnet_seq.cli.main"]
                                  if not (t.startswith("hnet_seq.cli.") and graph["hnet_seq.cli.main"][t])}
    edges["hnet_seq.model"] = {t for t in edges["hnet_seq.model"]
                               if not (t == "hnet_seq.checkpoint" and graph["hnet_seq.model"][t])}
    assert _cycle(edges) is None, " -> ".join(_cycle(edges))


def _reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for t in graph[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def test_inference_and_training_do_not_import_each_other():
    """Not directly, and not through another module (``checkpoint`` once reached into ``train``)."""
    graph = _graph()
    wings = ("hnet_seq.inference", "hnet_seq.train")

    def wing(name):
        return next((w for w in wings if name == w or name.startswith(w + ".")), None)

    crossings = sorted((m, t) for m in graph if wing(m) for t in _reachable(graph, m)
                       if wing(t) not in (None, wing(m)))
    assert not crossings, crossings[:5]
