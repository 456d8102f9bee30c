"""The package's own modules import each other at the top only, and without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import helixobs

PACKAGE = Path(helixobs.__file__).parent


def own_imports(tree: ast.AST, module: str) -> set[str]:
    """helixobs modules that `module` imports anywhere (module level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.ImportFrom):
            if stmt.level == 1:
                base = stmt.module
                if base is None:  # `from . import _attrs as A`
                    found.update(alias.name for alias in stmt.names)
                else:
                    found.add(base.split(".")[0])
            elif stmt.module and stmt.module.split(".")[0] == "helixobs":
                parts = stmt.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                parts = alias.name.split(".")
                if parts[0] == "helixobs" and len(parts) > 1:
                    found.add(parts[1])
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {
        name: own_imports(ast.parse(path.read_text()), name) & set(modules)
        for name, path in modules.items()
    }


def test_no_package_import_below_module_level() -> None:
    hidden = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(stmt) for stmt in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import) and id(node) not in top:
                relative = isinstance(node, ast.ImportFrom) and node.level > 0
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                if relative or any(n.split(".")[0] == "helixobs" for n in names):
                    hidden.append(f"{path.name}:{node.lineno}")
    assert hidden == []


def test_module_graph_is_acyclic() -> None:
    deps = graph()
    assert deps["instrument"] >= {"token", "logging"}  # the graph is really read
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, " -> ".join([*path, name])
        if name in done:
            return
        for dep in sorted(deps[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(deps):
        visit(name, [])
