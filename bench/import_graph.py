"""The module-level import graph of ``pconv_cli``, read from the source (nothing is imported).

    python bench/import_graph.py            # package-level edges, then the cycle check
    python bench/import_graph.py --modules  # module-level edges instead

An edge ``a -> b`` means a module of ``a`` imports a module of ``b`` when it is itself
imported: statements at the top level of a module (inside top-level ``if``/``try``/
``with`` blocks and class bodies too), not imports inside functions and not
``if TYPE_CHECKING:`` blocks. Relative imports are resolved; ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module, else of ``pkg``. Importing a
module also runs its parent packages' ``__init__``, but Python tolerates a package
whose ``__init__`` imports its own submodules, so those implicit edges are left out.

Packages are a module's package relative to ``pconv_cli`` (``commands``,
``models.pconv``, ``models`` for the registry); a module directly in ``pconv_cli`` is
its own node (``errors``, ``inpaint_jobs``). A cycle among modules (a strongly
connected group, Tarjan's algorithm) is what ``tests/test_architecture.py`` refuses;
the package-level groups are printed for information only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pconv_cli"

__all__ = [
    "cycles",
    "import_graph",
    "module_imports",
    "module_name",
    "package_graph",
    "package_of",
    "strongly_connected",
]


def module_name(path: Path, root: Path = ROOT) -> str:
    """``pconv_cli/models/registry.py`` -> ``pconv_cli.models.registry`` (packages: no
    ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_time_nodes(statements: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement run when the module is imported: the top level, and inside
    top-level compound statements and class bodies; not function bodies, not
    ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    for statement in statements:
        yield statement
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(statement, ast.If) and _is_type_checking(statement.test):
            yield from _import_time_nodes(statement.orelse)
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _import_time_nodes(getattr(statement, name, []))
        for handler in getattr(statement, "handlers", []):
            yield from _import_time_nodes(handler.body)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from X import ...`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def module_imports(
    source: str,
    module: str,
    *,
    is_package: bool = False,
    known: set[str] | None = None,
    package: str = PACKAGE,
) -> set[str]:
    """The modules of ``package`` that ``module`` (its ``source``) imports at module level.

    ``known``: the modules that exist (``from pkg import name`` is ``pkg.name`` when that
    is one of them); without it, every ``pkg.name`` in ``package`` counts as a module.
    """
    found: set[str] = set()
    for node in _import_time_nodes(ast.parse(source).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            for alias in node.names:
                child = f"{target}.{alias.name}"
                is_module = child in known if known is not None else True
                found.add(child if is_module and alias.name != "*" else target)
    inside = {name for name in found if name == package or name.startswith(package + ".")}
    if known is not None:
        inside = {_existing(name, known) for name in inside}
    return inside - {module}


def _existing(name: str, known: set[str]) -> str:
    """``name``, or its nearest enclosing module that exists (``import a.b.c`` as ``a.b``
    when ``c`` is an attribute)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` (a folder in ``root``) it imports at module level."""
    paths = sorted((root / package).rglob("*.py"))
    known = {module_name(path, root) for path in paths}
    return {
        module_name(path, root): module_imports(
            path.read_text(encoding="utf-8"),
            module_name(path, root),
            is_package=path.name == "__init__.py",
            known=known,
            package=package,
        )
        for path in paths
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (nodes sorted in each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: components of more than one module, or a module importing itself."""
    return [
        component
        for component in strongly_connected(graph)
        if len(component) > 1 or component[0] in graph.get(component[0], ())
    ]


def package_of(module: str, package: str = PACKAGE) -> str:
    """``pconv_cli.models.pconv.unet`` -> ``models.pconv``; ``pconv_cli.errors`` -> ``errors``;
    a package is its own (``pconv_cli.models`` -> ``models``, ``pconv_cli`` -> ``pconv_cli``)."""
    parts = module.split(".")[1:]
    if not parts:
        return package
    path = (ROOT / package).joinpath(*parts)
    return ".".join(parts if path.is_dir() or len(parts) == 1 else parts[:-1])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with every module replaced by its package (no self-edges)."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        edges = packages.setdefault(source, set())
        edges.update(package_of(target) for target in targets)
        edges.discard(source)
    return packages


def _print_edges(graph: dict[str, set[str]]) -> None:
    for source in sorted(graph):
        for target in sorted(graph[source]):
            print(f"{source} -> {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", action="store_true", help="module-level edges")
    args = parser.parse_args(argv)
    graph = import_graph()
    _print_edges(graph if args.modules else package_graph(graph))
    found = cycles(graph)
    if not found:
        print(f"\nno cycles among the {len(graph)} modules of {PACKAGE} (module-level imports)")
    for component in found:
        print(f"\ncycle: {' <-> '.join(component)}")
    groups = [c for c in strongly_connected(package_graph(graph)) if len(c) > 1]
    for group in groups:
        print(f"package-level group (information): {', '.join(group)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
