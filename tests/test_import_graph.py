"""No import cycles between our modules, counting imports inside functions too.

A function-level import only hides a cycle from the interpreter: the two modules
still cannot be understood, tested or changed apart.  So the graph is built from
the source with `ast`, every `import` statement counted wherever it is, except
those under `if TYPE_CHECKING:` (they never run).  Edges:

- `import a.b.c` is an edge to `a.b.c` (to the longest prefix that is a module of ours);
- `from a.b import c` is an edge to `a.b.c` if that is a module, else to `a.b`;
  relative imports are resolved against the importing module's package;
- a package's `__init__` is the module named after the package, so its imports of
  its own submodules are edges like any other.

The implicit import of parent packages (`import a.b` runs `a/__init__`) is not an
edge: every submodule would otherwise form a cycle with a package that re-exports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("apsis", "apsis_cli", "apsis_tui")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name → source file, for every module of our packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name `from ... import` reads from."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _ours(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is one of our modules."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module → {imported module of ours → line of the first such import}."""
    modules = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_ours(alias.name, modules) for alias in node.names]
            else:
                source = _resolve(module, path.name == "__init__.py", node)
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else _ours(source, modules))
            for target in targets:
                if target and target != module:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components of more than one module: each one is a cycle (or several)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # Iterative, so that a deep graph cannot hit the recursion limit.
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(sorted(graph[root]))))
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    """The component's modules and the imports that tie them, with line numbers."""
    members = set(component)
    files = module_files()
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for module in component:
        for target, line in sorted(graph[module].items()):
            if target in members:
                where = files[module].relative_to(ROOT)
                lines.append(f"    {module} -> {target}  ({where}:{line})")
    return "\n".join(lines)


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    # The checker itself must be able to fail: a function-level import closing a loop
    # is found, and an import under TYPE_CHECKING is not an edge.
    pkg = tmp_path / "apsis"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from . import a\nelse:\n    import apsis.sub\n")
    (pkg / "d.py").write_text("from . import c\n")
    (pkg / "e.py").write_text("import apsis.d\nfrom apsis.sub.b import f\n")
    graph = import_graph(tmp_path)
    assert graph["apsis.sub.b"] == {"apsis.a": 2}
    assert graph["apsis.c"] == {"apsis.sub": 5}  # its `else` runs
    assert graph["apsis.e"] == {"apsis.d": 1, "apsis.sub.b": 2}
    assert graph["apsis.sub"] == {"apsis.sub.b": 1}  # a package importing its own submodule
    assert strongly_connected(graph) == [["apsis.a", "apsis.sub.b"]]


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(c, graph) for c in cycles)
