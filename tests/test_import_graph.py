"""The import graph of sta_d2, read from the source with ``ast`` (nothing is imported): it has no
cycles, and its layers depend only downwards.

Every ``import`` and ``from ... import`` of an sta_d2 module counts, at module level or inside a
function or class (a function-level import still makes its module depend on the imported one);
only imports under ``if TYPE_CHECKING:`` are left out, as they never run. ``import sta_d2.a.b``
and ``from sta_d2.a import b`` with ``b`` a submodule are edges to module ``sta_d2.a.b``;
``from sta_d2.a import name`` with ``name`` defined in the package is an edge to ``sta_d2.a``
(its ``__init__``). The parent packages that Python initialises on the way are not edges."""
import ast
from collections import deque
from pathlib import Path

import pytest

PACKAGE = "sta_d2"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def find_modules(root):
    """``{dotted module name: path}`` for every .py file of the package at ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = find_modules(ROOT)


def known(name, modules):
    """``name`` if it is a module of ``modules``, else its longest prefix that is (None if no
    prefix is: not an sta_d2 import)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree):
    """Every Import / ImportFrom node of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def imported_modules(module, modules):
    """``(imported sta_d2 module, line)`` for each import statement of ``module``."""
    tree = ast.parse(modules[module].read_text(), filename=str(modules[module]))
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = known(alias.name, modules)
                if target:
                    yield target, node.lineno
            continue
        if node.level:  # relative: from the package of ``module``, up ``level - 1`` packages
            package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
            base = package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module
        source_module = known(source, modules)
        if source_module is None:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            yield (submodule if source_module == source and submodule in modules else source_module), node.lineno


def import_graph(modules=MODULES):
    """``{module: {imported module: first line importing it}}``, without self-edges."""
    graph = {}
    for module in modules:
        edges = graph[module] = {}
        for target, line in imported_modules(module, modules):
            if target != module:
                edges.setdefault(target, line)
    return graph


def strongly_connected_components(graph):
    """Tarjan's algorithm, iterative; the components in the order they are completed."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def shortest_cycle_through(graph, start, members):
    """A shortest cycle ``[start, ..., start]`` that stays inside ``members``."""
    came_from = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                path = [start]
                while node is not None:
                    path.append(node)
                    node = came_from[node]
                return path[::-1]
            if succ in members and succ not in came_from:
                came_from[succ] = node
                queue.append(succ)
    raise AssertionError(f"{start} is on no cycle")


def describe_cycle(graph, cycle):
    steps = [f"    {cycle[0]}"]
    for a, b in zip(cycle, cycle[1:]):
        steps.append(f"      -> {b}   ({MODULES[a].relative_to(ROOT.parent)}:{graph[a][b]})")
    return "\n".join(steps)


def test_sta_d2_has_no_import_cycles():
    graph = import_graph()
    cyclic = [c for c in strongly_connected_components(graph) if len(c) > 1]
    report = []
    for component in sorted(cyclic, key=lambda c: (-len(c), c)):
        members = set(component)
        cycle = shortest_cycle_through(graph, component[0], members)
        report.append(f"{len(component)} modules import each other: {', '.join(component)}\n"
                      f"  one cycle among them:\n{describe_cycle(graph, cycle)}")
    if cyclic:
        pytest.fail(f"{len(cyclic)} import cycle(s) in {PACKAGE}:\n\n" + "\n\n".join(report), pytrace=False)


def imports_of(graph, module, prefixes):
    """``"path:line imports target"`` for each edge from ``module`` to a module in ``prefixes``
    (a prefix matches the module and everything under it)."""
    return [f"{MODULES[module].relative_to(ROOT.parent)}:{line} imports {target}"
            for target, line in sorted(graph[module].items(), key=lambda item: item[1])
            if any(target == p or target.startswith(p + ".") for p in prefixes)]


def under(package):
    return [m for m in MODULES if m == package or m.startswith(package + ".")]


def test_layers_depend_only_downwards():
    """sta_d2.specs is the bottom layer; the weighting methods are independent of models, data and
    the training loop; the engine uses the weighting package's public interface only."""
    graph = import_graph()
    assert "sta_d2.specs" in MODULES, "sta_d2/specs.py is missing"
    violations = imports_of(graph, "sta_d2.specs", [PACKAGE])
    for module in under("sta_d2.weighting"):
        violations += imports_of(graph, module, ["sta_d2.modeling", "sta_d2.data", "sta_d2.engine"])
    for module in under("sta_d2.engine"):
        violations += imports_of(graph, module, ["sta_d2.weighting.gradients"])
    if violations:
        pytest.fail("imports against the layering:\n  " + "\n  ".join(violations), pytrace=False)


def test_the_graph_reads_each_kind_of_import(tmp_path):
    """Resolution on a small package of its own: absolute, relative, submodule and name imports,
    imports inside functions, and a cycle named in order."""
    files = {
        "sta_d2/__init__.py": "from . import a\nfrom .b import thing\n",
        "sta_d2/a/__init__.py": "X = 1\n",
        "sta_d2/a/m.py": "import os\nimport sta_d2.b\nfrom .. import c\n",
        "sta_d2/b.py": "def f():\n    from .a import X\n    from sta_d2.a import m\nthing = 1\n",
        "sta_d2/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(find_modules(tmp_path / "sta_d2"))
    assert graph == {
        "sta_d2": {"sta_d2.a": 1, "sta_d2.b": 2},
        "sta_d2.a": {},
        "sta_d2.a.m": {"sta_d2.b": 2, "sta_d2.c": 3},
        "sta_d2.b": {"sta_d2.a": 2, "sta_d2.a.m": 3},
        "sta_d2.c": {},
    }
    assert [c for c in strongly_connected_components(graph) if len(c) > 1] == [["sta_d2.a.m", "sta_d2.b"]]
    assert shortest_cycle_through(graph, "sta_d2.a.m", {"sta_d2.a.m", "sta_d2.b"}) == [
        "sta_d2.a.m", "sta_d2.b", "sta_d2.a.m"]
