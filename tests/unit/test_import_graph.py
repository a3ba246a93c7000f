"""The shape of the package: imports flow one way, and operations are typed library functions.

The CLI is one edge among others (a test, the controller, a manifest's apply): everything below
it must work without it, so nothing there imports provisioner.cli, and no two modules import
each other (function-level imports count: they only hide a circle until the call).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "provisioner"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every provisioner module that `path` imports, at any depth."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("provisioner"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("provisioner"):
            assert node.module is not None
            for alias in node.names:  # `from provisioner.ops import apps` imports a module
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else node.module


def graph() -> dict[str, set[str]]:
    return {
        name: {m for _, m in imported(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_nothing_below_the_cli_imports_it() -> None:
    offenders = [
        f"{name}:{line} imports {target}"
        for name, path in MODULES.items()
        if not name.startswith("provisioner.cli") and name != "provisioner.__main__"
        for line, target in imported(path)
        if target == "provisioner.cli" or target.startswith("provisioner.cli.")
    ]
    assert offenders == []


def test_the_local_cloud_is_reached_only_from_its_edge() -> None:
    """The product reaches the local cloud through the target; only `dynoform local` and the
    local cloud's own modules import it."""
    allowed = ("provisioner.localcloud", "provisioner.cli.local")
    offenders = [
        f"{name}:{line}"
        for name, path in MODULES.items()
        if not name.startswith(allowed)
        for line, target in imported(path)
        if target.startswith("provisioner.localcloud")
    ]
    assert offenders == []


def operations() -> Iterator[tuple[str, ast.FunctionDef]]:
    for name, path in MODULES.items():
        if not name.startswith("provisioner.ops."):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                yield name, node


@pytest.mark.parametrize(("module", "fn"), list(operations()), ids=lambda v: getattr(v, "name", v))
def test_operations_take_a_typed_context(module: str, fn: ast.FunctionDef) -> None:
    """No `g`, no `Any` for a parameter or the result of a library operation."""
    params = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    assert "g" not in [p.arg for p in params], f"{module}.{fn.name} takes the CLI's globals"
    for param in params:
        if param.arg == "ctx":
            assert ast.unparse(param.annotation or ast.Constant(None)) == "Context"
        assert ast.unparse(param.annotation or ast.Constant(None)) != "Any", (
            f"{module}.{fn.name}({param.arg}: Any)"
        )
    assert ast.unparse(fn.returns or ast.Constant(None)) != "Any", f"{module}.{fn.name} -> Any"


def test_the_dashboard_is_an_edge_beside_the_cli() -> None:
    """The dashboard calls operations like the CLI does; only `dynoform dashboard` starts it,
    and it never reaches for the CLI (checked above) nor the local cloud."""
    allowed = ("provisioner.dashboard", "provisioner.cli.dashboard")
    offenders = [
        f"{name}:{line}"
        for name, path in MODULES.items()
        if not name.startswith(allowed)
        for line, target in imported(path)
        if target.startswith("provisioner.dashboard")
    ]
    assert offenders == []
