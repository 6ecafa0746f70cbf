"""The package's layering, read from the source with ``ast``: no import cycle anywhere in ``src/reguidance``
(module-level, lazy and type-checking imports alike), and nothing outside ``reguidance.bench`` imports from it but
the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import reguidance

ROOT = Path(reguidance.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """module -> the modules of ``reguidance`` it imports (a ``from pkg import name`` of a submodule counts it)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                submodules = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files}
                if target in files and len(submodules) < len(node.names):  # a name of the module itself
                    edges.add(target)
                edges |= submodules  # ``from pkg import sub`` imports the submodule, not the package's names
        graph[name] = edges - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_sees_known_imports() -> None:
    """The reader finds a relative import two levels up and a ``from . import`` of a sibling (so that the checks
    below cannot pass on an empty graph)."""
    graph = _graph()
    assert "reguidance.wrapper" in graph["reguidance.bench.runner"]
    assert "reguidance.bench.records" in graph["reguidance.bench.report"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_src_has_no_import_cycle() -> None:
    assert _cycle(_graph()) is None


def test_only_the_command_line_imports_the_benchmark() -> None:
    graph = _graph()
    outside = {
        m
        for m, edges in graph.items()
        if not m.startswith("reguidance.bench") and any(e.startswith("reguidance.bench") for e in edges)
    }
    assert all(m == "reguidance.cli" or m.startswith("reguidance.cli.") for m in outside)
