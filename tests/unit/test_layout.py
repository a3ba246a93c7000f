import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_names():
    """pytest's default import mode needs unique basenames across test folders."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


PACKAGE = TESTS.parent / "provisioner"


def _imports() -> dict[str, set[str]]:
    """Each module of provisioner/ -> the modules of provisioner/ it imports (in functions too)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("provisioner"):
                for alias in node.names:
                    found.add(known(f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.Import):
                found |= {known(a.name) for a in node.names if a.name.startswith("provisioner")}
        graph[name] = found - {name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the path that closes it (depth-first, each start once)."""
    found, done = [], set()

    def visit(name: str, path: list[str]) -> None:
        for dep in sorted(graph.get(name, ())):
            if dep in path:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return found


def test_only_the_local_command_imports_the_local_cloud():
    """The product reaches the local cloud (the `local` extra) through `Target.local`."""
    outside = {
        name: sorted(dep for dep in deps if dep.startswith("provisioner.localcloud"))
        for name, deps in _imports().items()
        if not name.startswith("provisioner.localcloud") and name != "provisioner.cli.local"
    }
    assert {name: deps for name, deps in outside.items() if deps} == {}


def test_the_aws_modules_import_no_circle():
    graph = {
        name: {dep for dep in deps if dep.startswith("provisioner.aws")}
        for name, deps in _imports().items()
        if name.startswith("provisioner.aws")
    }
    assert _circles(graph) == []


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c", "a"]]
