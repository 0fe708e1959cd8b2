"""The architecture rules of issue #20, measured from the source (nothing of pconv is run):

- no function in ``pconv_cli`` has a body longer than 80 lines;
- no import cycle among ``pconv_cli`` modules at module level
  (the checker is :mod:`bench.import_graph`, which also prints the graph);
- generic code (everything outside ``pconv_cli/models/<family>/`` and the index
  ``pconv_cli/models/families.py``) names no model family: no string constant equal
  to a family's registry name or module path, and no import of a family folder.

Each checker is also run on small planted violations, so each rule can fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.import_graph import cycles, import_graph, module_imports, strongly_connected
from pconv_cli.models.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pconv_cli"
MAX_BODY_LINES = 80

FAMILY_NAMES = frozenset({"pconv_unet", "deepfillv2", "lama", "migan", "sunnerli"})
"""Names of the built-in families that generic code must not spell (the test adds every name
the family folders register)."""
FAMILY_FOLDERS = tuple(FAMILIES)
"""``pconv_cli/models/<folder>/``: the family folders, as the index lists them (a new
family is checked without editing this test)."""
KNOWN_FOLDERS = {"pconv", "deepfillv2", "lama", "migan", "sunnerli", "classifiers"}
INDEX = "pconv_cli/models/families.py"
PROGRAM = "pconv"
"""The PConv U-Net's alias is also the program's name (the CLI, the web app's title, cache
folders, the checkpoint format), so that one string is not refused; imports of the
``pconv`` family folder are."""

ALLOWED_NAMES = {("pconv_cli/evaluation/protocols.py", "lama")}
"""The one exception: the evaluation protocol ``lama-places512`` draws its masks with the
generator called ``"lama"`` (LaMa's published mask recipe, pconv_cli.data.reference_masks).
That is a mask protocol, not the LaMa model family, and it is allowed only where it is a
mask generator: the ``generator=`` of a protocol, or compared with ``<x>.generator``."""


# --------------------------------------------------------------------------- the checkers


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, from its first statement after the docstring to its
    end (the signature, and a Typer option list in it, do not count; nested functions
    count in the function that holds them)."""
    body = function.body
    first = body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    start = body[1].lineno if is_docstring and len(body) > 1 else first.lineno
    return function.end_lineno - start + 1


def long_functions(source: str, limit: int = MAX_BODY_LINES) -> list[tuple[str, int, int]]:
    """(name, line, body lines) of every function whose body is longer than ``limit``."""
    return [
        (node.name, node.lineno, body_lines(node))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and body_lines(node) > limit
    ]


def _is_family_module(module: str, folders) -> bool:
    return any(
        module == f"pconv_cli.models.{folder}" or module.startswith(f"pconv_cli.models.{folder}.")
        for folder in folders
    )


def _imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool):
    """Every module an import statement may load (``from a import b``: ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def _family_imports(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, folders):
    """The family modules an import statement loads (``from a import b``: ``a`` when it is
    one, else each ``a.b`` that is)."""
    modules = _imported_modules(node, module, is_package)
    if isinstance(node, ast.ImportFrom) and _is_family_module(modules[0], folders):
        return modules[:1]
    return [m for m in modules if _is_family_module(m, folders)]


def _prose(tree: ast.AST) -> set[int]:
    """ids of the string constants that are statements of their own (docstrings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_mask_generator(constant: ast.Constant, parents: dict[int, ast.AST]) -> bool:
    """``generator="lama"`` or ``x.generator == "lama"`` (a protocol's mask generator)."""
    parent = parents.get(id(constant))
    if isinstance(parent, ast.keyword):
        return parent.arg == "generator"
    if isinstance(parent, ast.Compare):
        sides = [parent.left, *parent.comparators]
        return any(isinstance(s, ast.Attribute) and s.attr == "generator" for s in sides)
    return False


def family_mentions(
    source: str,
    path: str,
    *,
    names=FAMILY_NAMES,
    folders=FAMILY_FOLDERS,
    allowed=frozenset(ALLOWED_NAMES),
) -> list[str]:
    """What in a generic module names a family: string constants equal to a registry name
    or a family module path, and imports of a family folder (anywhere in the module)."""
    module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    tree = ast.parse(source)
    prose, parents = _prose(tree), _parents(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = _family_imports(node, module, path.endswith("__init__.py"), folders)
            found += [(node.lineno, node.col_offset, f"imports {m}") for m in modules]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in prose:
                continue
            if (path, node.value) in allowed and _is_mask_generator(node, parents):
                continue
            if node.value in names or _is_family_module(node.value, folders):
                found.append((node.lineno, node.col_offset, f"string {node.value!r}"))
    return [f"{path}:{line}: {what}" for line, _, what in sorted(found)]


def _generic_files() -> list[Path]:
    family_dirs = [PACKAGE / "models" / folder for folder in FAMILY_FOLDERS]
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != INDEX
        and not any(path.is_relative_to(folder) for folder in family_dirs)
    ]


def _registered_names() -> set[str]:
    """Every family name and alias registered by a built-in family folder (but ``pconv``)."""
    from pconv_cli.models.registry import get_family, list_models

    families = [get_family(name) for name in list_models(include_resolvable=False)]
    return {
        alias
        for family in families
        if _is_family_module(family.module, FAMILY_FOLDERS)
        for alias in (family.name, *family.aliases)
    } - {PROGRAM}


# --------------------------------------------------------------------------- the rules


def test_no_function_is_longer_than_80_lines():
    too_long = [
        f"{path.relative_to(ROOT)}:{line} {name} ({lines} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, line, lines in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not too_long, f"functions over {MAX_BODY_LINES} lines: {too_long}"


def test_no_import_cycle_among_modules():
    graph = import_graph()
    assert "pconv_cli.models.registry" in graph and len(graph) > 100  # it read the package
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_generic_code_names_no_family():
    names = FAMILY_NAMES | _registered_names()
    mentions = [
        mention
        for path in _generic_files()
        for mention in family_mentions(
            path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix(), names=names
        )
    ]
    assert not mentions, "generic code names a model family: " + "; ".join(mentions)


def test_the_family_lists_match_the_code():
    """The names and folders above are the real ones (else the rule would check nothing)."""
    assert set(FAMILY_FOLDERS) >= KNOWN_FOLDERS
    with_family = {path.parent.name for path in (PACKAGE / "models").glob("*/family.py")}
    assert with_family == set(FAMILY_FOLDERS)  # every family folder is indexed, and only those
    registered = _registered_names()
    assert FAMILY_NAMES - {"sunnerli"} <= registered  # sunnerli: a folder and a format name
    assert {"sunnerli_pconv", "sunnerli_unet", "unet"} <= registered
    generic = {p.relative_to(ROOT).as_posix() for p in _generic_files()}
    assert "pconv_cli/evaluation/protocols.py" in generic and INDEX not in generic
    assert not any(p.startswith("pconv_cli/models/lama/") for p in generic)


_EVERY_HELP = """
import sys
from typer.testing import CliRunner
from pconv_cli.cli import app
commands = [[]] + [[name] for name in (
    "train", "finetune", "eval", "inpaint", "gen-masks", "serve", "weights", "classify")]
commands += [["weights", name] for name in ("list", "download", "convert")]
commands += [["classify", name] for name in ("train", "eval")]
for command in commands:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, (command, result.output)
print(",".join(m for m in ("torch", "torchvision", "fastapi", "uvicorn") if m in sys.modules))
"""


def test_no_help_imports_torch():
    """Every command's ``--help`` (serve's too) stays light: no torch, no web stack."""
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP], capture_output=True, text=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"--help imported {result.stdout.strip()}"


# --------------------------------------------------------------------------- the rules can fail


def _function(body_lines_count: int, *, docstring: bool = False, options: int = 0) -> str:
    params = "".join(f"    option_{i}: int = typer.Option(1),\n" for i in range(options))
    doc = '    """Docstring.\n\n    More words.\n    """\n' if docstring else ""
    body = "".join(f"    x_{i} = {i}\n" for i in range(body_lines_count))
    return f"def f(\n{params}) -> None:\n{doc}{body}"


def test_the_length_rule_fails_on_a_long_function():
    assert long_functions(_function(80)) == []
    assert long_functions(_function(81)) == [("f", 1, 81)]
    assert long_functions(_function(80, docstring=True, options=40)) == []  # not counted
    nested = "def outer():\n" + textwrap.indent(_function(79), "    ") + "    return f\n"
    assert [name for name, _, _ in long_functions(nested)] == ["outer"]  # f's lines count
    method = "class C:\n" + textwrap.indent(_function(81).replace("def f(", "async def f("), "  ")
    assert long_functions(method) == [("f", 2, 81)]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_the_cycle_rule_fails_on_a_planted_cycle(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg import a  # a package importing its own module: fine\n",
        "pkg/a.py": "from pkg.sub import b\n\ndef f():\n    from pkg import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "import os\nfrom .. import c\n",
        "pkg/c.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from pkg import a
            else:
                import pkg.sub.b
        """,
        "pkg/d.py": "from pkg import e\n",
        "pkg/e.py": "try:\n    from . import d\nexcept ImportError:\n    pass\n",
    })  # fmt: skip
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}  # the function-level import does not count
    assert graph["pkg.sub.b"] == {"pkg.c"}  # relative import resolved
    assert graph["pkg.c"] == {"pkg.sub.b"}  # TYPE_CHECKING skipped, its else kept
    assert graph["pkg"] == {"pkg.a"}  # a package importing its module: no way back, no cycle
    assert sorted(cycles(graph)) == [["pkg.c", "pkg.sub.b"], ["pkg.d", "pkg.e"]]


def test_the_cycle_checker_on_graphs():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert sorted(map(len, strongly_connected({"a": {"b"}, "b": set()}))) == [1, 1]
    assert module_imports("from . import x\n", "pconv_cli.p", is_package=True) == {
        "pconv_cli.p.x"
    }


def test_the_family_rule_fails_on_planted_mentions():
    planted = textwrap.dedent('''
        """Docstrings may talk about lama and pconv_cli.models.lama."""
        from pconv_cli.models.lama.model import LamaModel
        from pconv_cli.models import migan
        from ..models.pconv import unet
        import pconv_cli.models.classifiers.zoo
        from pconv_cli.models.families import FAMILIES  # the index: fine
        from pconv_cli.models.registry import get_family  # fine

        DEFAULT = "pconv_unet"  # a comment may say deepfillv2

        def f(name):
            """lama in prose is fine."""
            return get_family("deepfillv2"), name == "lama", "pconv_cli.models.sunnerli.zoo"
    ''')
    found = family_mentions(planted, "pconv_cli/commands/x.py")
    assert [m.split(": ", 1)[1] for m in found] == [
        "imports pconv_cli.models.lama.model",
        "imports pconv_cli.models.migan",
        "imports pconv_cli.models.pconv",
        "imports pconv_cli.models.classifiers.zoo",
        "string 'pconv_unet'",
        "string 'deepfillv2'",
        "string 'lama'",
        "string 'pconv_cli.models.sunnerli.zoo'",
    ]


def test_the_protocol_exception_is_only_the_mask_generator():
    protocol = 'P(name="lama-places512", generator="lama")\nif p.generator == "lama":\n    pass\n'
    where = "pconv_cli/evaluation/protocols.py"
    assert family_mentions(protocol, where) == []
    assert family_mentions(protocol, "pconv_cli/evaluation/report.py") != []
    for other in ('ARCH = "lama"\n', 'build(arch="lama")\n', 'if p.arch == "lama":\n    pass\n'):
        assert family_mentions(other, where) == [f"{where}:1: string 'lama'"], other


@pytest.mark.parametrize("name", sorted(FAMILY_NAMES))
def test_every_family_name_is_caught(name):
    assert family_mentions(f"x = {name!r}\n", "pconv_cli/files.py") != []
