"""The package's layers point one way: a module imports only from its own layer or lower ones.

Every module under ``symexpr/`` is parsed with :mod:`ast` (nothing is
imported), and every import statement counts: at module level, inside
functions, under ``if``/``try``, ``import x`` and ``from x import y``,
relative or absolute.  A lazy import inside a function still makes the
importer depend on the imported module, so it is held to the same rule.

Importing a submodule also runs its parent packages' ``__init__``; that is
how Python packages work and is not counted.  ``import symexpr`` or ``from
symexpr import name`` (where ``name`` is not a submodule) is an import of the
package root, the top layer.

The layers are described in docs/design.md ("Layers").
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

import symexpr

PACKAGE_DIR = pathlib.Path(symexpr.__file__).resolve().parent

#: Lowest first.  Each entry names modules exactly or, ending in ``.*``, a
#: package and everything below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("symexpr.dtypes", "symexpr._version")),
    ("graph", ("symexpr.graph.*", "symexpr.symbols")),
    ("ops", ("symexpr.ops.*",)),
    ("rewriting", ("symexpr.rewriting.*",)),
    ("passes", ("symexpr.passes.*",)),
    ("kernel", ("symexpr.kernel.*",)),
    ("runtime", ("symexpr.runtime.*",)),
    ("backends", ("symexpr.backends.*",)),
    ("compile", ("symexpr.compile.*",)),
    ("printing", ("symexpr.printing",)),
    ("api", ("symexpr", "symexpr.testing.*", "symexpr.examples.*")),
    ("quant", ("symexpr.quant.*", "symexpr.attention.*")),
    ("models", ("symexpr.models.*",)),
    ("cli", ("symexpr.__main__",)),
]

#: Imports that break the rule in files whose fix is pending elsewhere:
#: ``(importer, imported) -> why``.  An entry that no longer occurs fails the
#: test, so the list only shrinks.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

#: Imports inside one layer that close an import cycle and are not yet
#: removed: ``(importer, imported) -> why``.  With these (and KNOWN_UPWARD)
#: left out, the import graph must have no cycle at all; an entry that no
#: longer occurs fails the test.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


MODULES = discover_modules()


def is_package(name: str) -> bool:
    if name == "symexpr":
        return True
    path = MODULES.get(name)
    if path is not None:
        return path.name == "__init__.py"
    # A folder without __init__.py (a namespace package), e.g. symexpr.graph.
    return (PACKAGE_DIR.parent / name.replace(".", "/")).is_dir()


def resolve(name: str) -> str | None:
    """The symexpr module that importing ``name`` runs last: the longest known prefix."""
    if name != "symexpr" and not name.startswith("symexpr."):
        return None
    if name not in MODULES and (PACKAGE_DIR.parent / name.replace(".", "/")).is_dir():
        return None  # a namespace package (no __init__.py) runs no code
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return "symexpr"


def imports_of(module: str, path: pathlib.Path) -> set[str]:
    """Every symexpr module that ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package(module) else module.rpartition(".")[0]
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin != "symexpr" and not origin.startswith("symexpr."):
                continue
            for alias in node.names:
                sub = f"{origin}.{alias.name}"
                if alias.name != "*" and (sub in MODULES or is_package(sub)):
                    target = resolve(sub)
                else:
                    target = resolve(origin)
                if target is not None:
                    found.add(target)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            target = resolve(node.args[0].value)
            if target is not None:
                found.add(target)
    found.discard(module)
    return found


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith(".*"):
                package = pattern[:-2]
                hit = module == package or module.startswith(package + ".")
                length = len(package)
            else:
                hit = module == pattern
                length = len(pattern)
            if hit and length > best_len:
                best, best_len = index, length
    return best


@pytest.fixture(scope="module")
def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for module, path in MODULES.items():
        g.add_node(module)
        for target in imports_of(module, path):
            g.add_edge(module, target)
    return g


def test_modules_are_found():
    for expected in ("symexpr", "symexpr.graph.basic", "symexpr.ops.elemwise", "symexpr.compile.function"):
        assert expected in MODULES
    assert len(MODULES) > 40


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"modules with no layer (add them to LAYERS in {__file__}): {missing}"


def test_import_parser_sees_lazy_and_relative_imports(tmp_path):
    # The parser itself: a function-level import and relative forms resolve to modules.
    source = (
        "import symexpr.graph.basic\n"
        "from symexpr import ops\n"
        "from . import fgraph\n"
        "from .traversal import toposort\n"
        "def f():\n"
        "    from symexpr.compile.function import function\n"
        "    import symexpr\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    found = imports_of("symexpr.graph.fake", path)
    assert found == {
        "symexpr.graph.basic",
        "symexpr.ops",
        "symexpr.graph.fgraph",
        "symexpr.graph.traversal",
        "symexpr.compile.function",
        "symexpr",
    }


def _layer_name(module: str) -> str:
    return LAYERS[layer_of(module)][0]


def test_no_lower_layer_imports_a_higher_one(import_graph):
    upward = sorted(
        (src, dst)
        for src, dst in import_graph.edges
        if layer_of(src) is not None and layer_of(dst) is not None and layer_of(src) < layer_of(dst)
    )
    unexpected = [pair for pair in upward if pair not in KNOWN_UPWARD]
    stale = [pair for pair in KNOWN_UPWARD if pair not in upward]
    order = " < ".join(name for name, _ in LAYERS)
    lines = [
        f"  {src} ({_layer_name(src)}) imports {dst} ({_layer_name(dst)})" for src, dst in unexpected
    ]
    assert not unexpected, (
        f"{len(unexpected)} import(s) from a lower layer to a higher one (layers, lowest first: {order}); "
        "imports inside functions count too:\n" + "\n".join(lines)
    )
    assert not stale, f"KNOWN_UPWARD entries that no longer occur (remove them): {stale}"


def _describe_cycle(graph: nx.DiGraph, component: frozenset) -> str:
    cycle = next(nx.simple_cycles(graph.subgraph(component)))
    return f"  {len(component)} modules {sorted(component)}, e.g. " + " -> ".join(cycle + [cycle[0]])


def test_no_import_cycles(import_graph):
    for src, dst in KNOWN_CYCLE_EDGES:
        assert layer_of(src) == layer_of(dst), f"KNOWN_CYCLE_EDGES holds same-layer imports only: {src} -> {dst}"
    stale = [pair for pair in KNOWN_CYCLE_EDGES if not import_graph.has_edge(*pair)]
    assert not stale, f"KNOWN_CYCLE_EDGES entries that no longer occur (remove them): {stale}"
    # A known upward import is reported by the test above; the cycles it closes are its consequence.
    graph = import_graph.copy()
    graph.remove_edges_from(KNOWN_UPWARD)
    graph.remove_edges_from(KNOWN_CYCLE_EDGES)
    cycles = [frozenset(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    crossing = [c for c in cycles if len({layer_of(m) for m in c}) > 1]
    assert not crossing, "import cycles across layers:\n" + "\n".join(_describe_cycle(graph, c) for c in crossing)
    assert not cycles, "import cycles (each a set of modules that import each other):\n" + "\n".join(
        _describe_cycle(graph, c) for c in cycles
    )


def test_variable_api_is_plugged_in_from_above():
    from symexpr.compile.evaluate import Evaluation
    from symexpr.graph.basic import Variable, extend_variable
    from symexpr.ops.variable import TensorOperators

    assert Variable.__add__ is TensorOperators.__add__ and Variable.sum is TensorOperators.sum
    assert Variable.eval is Evaluation.eval
    assert Variable.__hash__ is object.__hash__  # TensorOperators defines __eq__; identity hashing stays
    extend_variable(TensorOperators)  # re-installing the same mixin is allowed

    class TakesLen:
        __slots__ = ()

        def __len__(self):
            return 0

    class TakesSum:
        __slots__ = ()

        def sum(self):
            return 0

    with pytest.raises(ValueError, match="Variable.__len__"):
        extend_variable(TakesLen)
    with pytest.raises(ValueError, match="TensorOperators.sum"):
        extend_variable(TakesSum)
    assert Variable.sum is TensorOperators.sum


@pytest.mark.parametrize("renderer,other", [("llvm", "cuda"), ("cuda", "llvm")])
def test_renderers_never_import_each_other(import_graph, renderer, other):
    """The llvm and cuda backends share the kernel IR and its lowering, never each other's code."""
    prefix, forbidden = f"symexpr.backends.{renderer}", f"symexpr.backends.{other}"
    bad = sorted((src, dst) for src, dst in import_graph.edges
                 if src.startswith(prefix) and (dst == forbidden or dst.startswith(forbidden + ".")))
    assert not bad, f"{renderer} imports {other}: {bad}"
