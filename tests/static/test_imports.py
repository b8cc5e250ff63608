"""No import cycle between the modules of lab/, not even one hidden by an import
inside a function: every import statement counts, wherever it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lab.paths import REPO

pytestmark = pytest.mark.static


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under package (a package is its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """name if it is a module of the package, else its closest enclosing one."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (at any depth of its code).

    `from lab.pkg import name` is an edge to lab.pkg.name if that is a module,
    else to lab.pkg; `from lab import x` one to lab.x; `import lab.x.y` one to lab.x.y."""
    modules = module_names(package)
    top = package.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            for target in targets:
                if target == top or target.startswith(top + "."):
                    resolved = _resolve(target, modules)
                    if resolved is not None and resolved != name:
                        graph[name].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return [*path[path.index(imported) :], imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        path.pop()
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_lab_has_no_import_cycle():
    cycle = find_cycle(import_graph(REPO / "lab"))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_imports_inside_functions_are_edges_too():
    graph = import_graph(REPO / "lab")
    # lab.nodes.commands imports the mirror inside up() and down() only
    assert "lab.mirror.commands" in graph["lab.nodes.commands"]
    assert "lab.mirror.tools" in graph["lab.bootstrap"]


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text('"""nothing imported here"""\n')
    (package / "sub" / "a.py").write_text("from pkg.sub.b import thing\n")
    (package / "sub" / "b.py").write_text("def thing():\n    from pkg.sub import a\n    return a\n")
    (package / "c.py").write_text("from pkg import sub\nfrom . import d\n")
    (package / "d.py").write_text("import pkg.sub.a\n")
    graph = import_graph(package)
    assert graph["pkg.c"] == {"pkg.sub", "pkg.d"}
    assert graph["pkg.d"] == {"pkg.sub.a"}
    assert find_cycle(graph) == ["pkg.sub.a", "pkg.sub.b", "pkg.sub.a"]
    (package / "sub" / "b.py").write_text("def thing():\n    return 1\n")
    assert find_cycle(import_graph(package)) == []
