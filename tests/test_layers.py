"""The house's shape, drawn from its imports: no import circles anywhere in tipd, and in the
daemon's core every arrow runs down the layers (protocol → … → service → cli), never back up.
Imports made only for type checking and imports inside functions count like any other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tipd"

#: the daemon's core, lowest first: a module may import only from its own layer or below
LAYERS: list[list[str]] = [
    ["errors", "taxonomy", "protocol", "systemd", "logs", "preprocess", "familiarity", "ratelimit"],
    ["curve", "frames", "models", "scanlines", "safety", "policy", "condition", "ports"],
    ["ensemble", "journal", "archive", "events", "controller", "config", "readers", "physics"],
    ["modelset", "evidence", "decide"],
    ["microscopes", "record", "dispatch", "classify", "closedloop"],
    ["intake", "health", "operator_desk"],
    ["service"],
    ["cli"],
]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every tipd module → the tipd modules it imports (``from tipd.x import y`` counts as
    ``tipd.x.y`` where that is a module)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    out.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        graph[name] = {m for m in out if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_circles_and_the_test_would_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_the_core_imports_only_downwards() -> None:
    graph = import_graph()
    layer = {f"tipd.{m}": k for k, names in enumerate(LAYERS) for m in names}
    up = []
    for module, k in layer.items():
        for target in graph.get(module, set()):
            top = ".".join(target.split(".")[:2])  # tipd.readers.sxm → tipd.readers
            if layer.get(top, -1) > k:
                up.append(f"{module} → {target}")
    assert up == []
    assert set(layer) <= set(graph), set(layer) - set(graph)
