"""The package's structure: no import cycles, a public surface that says what is public, and
an import that leaves JAX as it was.

The import graph is read from the source (``ast``), every ``import`` counted, including
those inside functions (a lazy import is still a dependency). Importing a module of another
sub-package also depends on that sub-package's ``__init__`` (importing
``mcsim.engine.conditioning`` from ``mcsim.results`` runs ``mcsim/engine/__init__`` first),
so a cycle through a package's re-exports is found too; the root package ``mcsim`` is left
out of that rule, since its ``__init__`` only gathers the public names and every module
lives under it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import mcsim
import mcsim.engine
import mcsim.report

PACKAGE = Path(mcsim.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _executed_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """mcsim module -> the mcsim modules it imports (anywhere in its source)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _executed_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from pkg import sub` names a module when pkg.sub is one
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                           for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "mcsim":
                    graph[name].add(target)
                    # the target's packages run first, unless this module is inside them
                    ancestor = target.rpartition(".")[0]
                    while ancestor not in ("", "mcsim"):
                        if not (name == ancestor or name.startswith(ancestor + ".")):
                            graph[name].add(ancestor)
                        ancestor = ancestor.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source():
    """The reader sees what it must: relative, nested and lazy imports, and not the
    annotation-only ones."""
    graph = import_graph()
    assert "mcsim.results" not in graph["mcsim.plots"]  # under TYPE_CHECKING
    assert "mcsim.engine.kernel" in graph["mcsim.engine.chunk"]
    assert "mcsim.model" in graph["mcsim.engine.kernel"]
    assert "mcsim.plots" in graph["mcsim.results"]  # a lazy import inside a method
    assert "mcsim.engine" in graph["mcsim.results"]  # conditioning's package runs first
    assert "mcsim.engine" not in graph["mcsim.engine.kernel"]  # its own package


def test_cycles_are_found_when_there_are_some():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_mcsim():
    assert cycles(import_graph()) == []


def test_layers_point_down():
    """The model knows no config; the engine knows no results, report, API or CLI; the
    report knows no API or CLI; plots import nothing of mcsim but its version."""
    graph = import_graph()

    def reaches(start: str, prefix: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m.startswith(prefix) and m != start:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    assert not reaches("mcsim.model", "mcsim.config")
    engine = [m for m in graph if m.startswith("mcsim.engine")]
    for m in engine:
        for above in ("mcsim.results", "mcsim.report", "mcsim.api", "mcsim.cli"):
            assert not reaches(m, above), (m, above)
    for m in (m for m in graph if m.startswith("mcsim.report")):
        for above in ("mcsim.api", "mcsim.cli"):
            assert not reaches(m, above), (m, above)
    assert graph["mcsim.plots"] <= {"mcsim._version"}


def test_public_names_exist():
    for package in (mcsim, mcsim.engine, mcsim.report):
        for name in package.__all__:
            assert hasattr(package, name), (package.__name__, name)


def test_importing_mcsim_leaves_jax_as_it_was():
    """x64 is switched on by the entry points that need it, not by the import."""
    code = ("import jax, mcsim, mcsim.engine, mcsim.report; "
            "assert not jax.config.read('jax_enable_x64'); "
            "mcsim.enable_x64(); assert jax.config.read('jax_enable_x64')")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_command_line_start_leaves_heavy_libraries_for_later():
    """Importing the command line does not import matplotlib, pandas or scipy.stats (0.2-0.5 s
    each of every ``mcsim`` process): the modules that need them import them where used."""
    import subprocess
    import sys

    code = ("import sys, mcsim.cli; print(sorted(m for m in ('matplotlib', 'pandas', "
            "'scipy.stats') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
