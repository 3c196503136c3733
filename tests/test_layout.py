"""The package layout: no import cycle between modules nor between top-level rooms
(``config`` <- ``models`` <- ``feeds`` <- ``streams`` <- ``ops`` <- ``cli``; ``kafka`` and
``embedded`` lean on ``config`` only). Read from the source with ``ast``, nothing imported."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, from pyproject's package mapping."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = tool["package-dir"]
    found = {}
    for package in tool["packages"]:
        top = ".".join(package.split(".")[:2])
        folder = ROOT / dirs.get(package, Path(dirs[top], *package.split(".")[2:]))
        for path in folder.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from x import y`` counts x and x.y)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            module = (f"{base}." if node.level else "") + (node.module or "")
            module = module.rstrip(".") or base
            for target in [module, *(f"{module}.{a.name}" for a in node.names)]:
                if target in mods and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules_or_rooms():
    graph = imports(modules())
    assert cycles(graph) == []
    rooms: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            if a.split(".")[1:2] != b.split(".")[1:2] and "." in a and "." in b:
                rooms[a.split(".")[1]].add(b.split(".")[1])
    assert cycles(rooms) == []
    assert rooms["config"] == set()  # settings lean on nothing
