"""The package's shape: seams that import one way, small modules, a map.

Each seam (a package such as ``signalbox.outbox``, or a top-level module such
as ``signalbox.conf``) sits as a whole in one layer: its modules may import
from their own layer or lower ones, never higher, and neither seams nor
modules import each other in a circle. Every import counts, at module level or inside a
function (a function-level import still makes the dependency; it only hides
it from a reader), found by parsing the source with :mod:`ast`. A new seam
must be given a layer here, which is the moment to decide where it belongs.

Also checked: no module in ``src/`` is over 400 lines, and every module is
in ``docs/development.md``'s layout table, with a line saying what it is for.

(What the package may never import or call, pickle or eval say, is
test_security.py's business; it reads the package with :func:`modules` and
:func:`imported` from here.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "signalbox"
LAYOUT_DOC = ROOT / "docs" / "development.md"

LAYERS: tuple[tuple[str, ...], ...] = (
    # 0. Foundations: values, references, Django's differences.
    (
        "signalbox.exceptions",
        "signalbox._compat",
        "signalbox._refs",
        "signalbox._held",
        "signalbox._states",
        "signalbox._context",
        "signalbox._connections",
        "signalbox._forks",
        "signalbox._outage",
    ),
    # 1. What a receiver and a send are: settings, options, keys, the codec,
    #    the outbox table.
    (
        "signalbox.conf",
        "signalbox._travel",
        "signalbox.policy",
        "signalbox._naming",
        "signalbox.registry",
        "signalbox._routes",
        "signalbox.codec",
        "signalbox.models",
    ),
    # 2. Instrumentation, and the outbox's transitions and SQL.
    ("signalbox.observe", "signalbox.outbox"),
    # 3. The runtime: running a claimed delivery.
    ("signalbox.worker",),
    # 4. Engines: handing committed deliveries to a distributed engine.
    ("signalbox.engines",),
    # 5. What is connected in place of a receiver.
    ("signalbox._adapters",),
    # 6. Dispatch: the run modes, sending, connecting.
    ("signalbox._modes", "signalbox._sending", "signalbox.dispatch"),
    # 7. Interfaces: what people use to look and act.
    (
        "signalbox.inventory",
        "signalbox.status",
        "signalbox.doctor",
        "signalbox.checks",
        "signalbox.admin",
        "signalbox.apps",
        "signalbox.management",
        "signalbox.migrations",
        "signalbox.testing",
        "signalbox.health",
        "signalbox.contrib",
    ),
    # 8. The public names (signalbox/__init__.py).
    ("signalbox",),
)

MAX_LINES = 400

COVERED_BY_DIRECTORY_ROW = ("migrations/",)
"""Directories whose modules one layout row describes together."""


def modules() -> dict[str, ast.Module]:
    """Every module of the package, parsed, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_dotted(path)] = ast.parse(path.read_text(), filename=str(path))
    return found


def imported(tree: ast.Module, *, for_types: bool = True) -> set[str]:
    """Every name ``tree`` imports, anywhere in it: ``package.module`` for
    ``import``, ``package.module.name`` for ``from package.module import name``.

    ``for_types=False`` leaves out the imports under ``if TYPE_CHECKING:``,
    which run only for a type checker."""
    names = set()
    for node in _walk(tree, for_types):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _walk(node: ast.AST, for_types: bool) -> Iterator[ast.AST]:
    yield node
    for child in ast.iter_child_nodes(node):
        if not for_types and _type_checking_only(child):
            continue
        yield from _walk(child, for_types)


def _type_checking_only(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def seam_of(name: str) -> str:
    """The seam a dotted name belongs to: ``signalbox.outbox._leases.claim`` is
    in ``signalbox.outbox``; a name from ``signalbox/__init__.py`` (``from
    signalbox import Signal``) is in ``signalbox``."""
    parts = name.split(".")
    if len(parts) > 1 and (
        (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()
    ):
        return f"signalbox.{parts[1]}"
    return "signalbox"


def layer_of(seam: str) -> int | None:
    """The seam's layer in :data:`LAYERS`, or None when it has none."""
    for number, seams in enumerate(LAYERS):
        if seam in seams:
            return number
    return None


def _dotted(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_between_seams() -> Iterator[tuple[str, str]]:
    """(importing module, imported seam) for every import that crosses seams."""
    for module, tree in modules().items():
        for name in imported(tree):
            if name == "signalbox" or name.startswith("signalbox."):
                seam = seam_of(name)
                if seam != seam_of(module):
                    yield module, seam


def _upward_imports() -> set[tuple[str, str]]:
    upward = set()
    for module, seam in _imports_between_seams():
        own, theirs = layer_of(seam_of(module)), layer_of(seam)
        if own is not None and theirs is not None and theirs > own:
            upward.add((module, seam))
    return upward


def test_layers_name_each_seam_once() -> None:
    listed = [seam for seams in LAYERS for seam in seams]
    assert len(listed) == len(set(listed)), "a seam is in two layers"


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_seam_has_a_layer(module: str) -> None:
    seam = seam_of(module)
    assert layer_of(seam) is not None, (
        f"{seam} (which {module} is in) needs a layer in LAYERS in "
        f"tests/test_architecture.py"
    )


def test_every_layered_seam_exists() -> None:
    existing = {seam_of(module) for module in modules()}
    missing = [seam for seams in LAYERS for seam in seams if seam not in existing]
    assert missing == [], f"LAYERS names seams that are gone: {missing}"


def test_imports_flow_downwards() -> None:
    upward = _upward_imports()
    described = [
        f"{module} (layer {layer_of(seam_of(module))}) imports {seam} "
        f"(layer {layer_of(seam)})"
        for module, seam in sorted(upward)
    ]
    assert described == [], "imports run back up the layers:\n" + "\n".join(described)


def test_no_seams_import_each_other_in_a_circle() -> None:
    # Within one layer imports may go either way, so a circle there is not an
    # upward import; it is still two seams that cannot be understood apart.
    edges: dict[str, set[str]] = {}
    for module, seam in _imports_between_seams():
        edges.setdefault(seam_of(module), set()).add(seam)
    circles = _circles(edges)
    assert circles == [], f"seams that import each other: {circles}"


def test_no_modules_import_each_other_in_a_circle() -> None:
    # Inside a seam too: a circle behind a function-level import (a package's
    # __init__ and one of its modules, say) is two modules that cannot be
    # understood, loaded or tested apart. A module naming another's class in
    # its annotations only (under TYPE_CHECKING) loads and tests apart; the
    # layers still count such imports (test_imports_flow_downwards).
    found = modules()
    edges: dict[str, set[str]] = {}
    for module, tree in found.items():
        for name in imported(tree, for_types=False):
            target = name
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target.startswith("signalbox") and target != module:
                edges.setdefault(module, set()).add(target)
    circles = _circles(edges)
    assert circles == [], f"modules that import each other: {circles}"


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one seam (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(seam: str) -> None:
        index[seam] = low[seam] = len(index)
        stack.append(seam)
        for other in sorted(edges.get(seam, ())):
            if other not in index:
                visit(other)
                low[seam] = min(low[seam], low[other])
            elif other in stack:
                low[seam] = min(low[seam], index[other])
        if low[seam] == index[seam]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == seam:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for seam in sorted(edges):
        if seam not in index:
            visit(seam)
    return found


def test_imports_are_absolute() -> None:
    # The checks above read absolute names; a relative import would slip by.
    relative = sorted(
        module
        for module, tree in modules().items()
        if any(
            isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)
        )
    )
    assert relative == [], f"relative imports (write them in full): {relative}"


def _lines_by_module() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in sorted(SRC.rglob("*.py"))
    }


def test_no_module_is_over_400_lines() -> None:
    long = {
        module: count
        for module, count in _lines_by_module().items()
        if count > MAX_LINES
    }
    assert long == {}, (
        f"modules over {MAX_LINES} lines (split them along a seam): {long}"
    )


def _layout_rows() -> dict[str, str]:
    """docs/development.md's layout table: module path -> what it is for."""
    text = LAYOUT_DOC.read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return {
        match[1]: match[2].strip()
        for match in re.finditer(r"^\| `([^`]+)` \|([^|\n]+)\|", section, re.M)
    }


def _documented_modules() -> list[str]:
    """Every module the layout table must list (empty ``__init__.py`` files and
    the modules of :data:`COVERED_BY_DIRECTORY_ROW` aside)."""
    return [
        module
        for module, count in _lines_by_module().items()
        if count > 0 and not module.startswith(COVERED_BY_DIRECTORY_ROW)
    ]


@pytest.mark.parametrize("module", _documented_modules())
def test_every_module_is_in_the_layout_table(module: str) -> None:
    rows = _layout_rows()
    assert module in rows, (
        f"src/signalbox/{module} needs a row in the layout table of "
        f"docs/development.md: | `{module}` | what it is for, in one line |"
    )
    assert rows[module], f"the layout row of {module} says nothing"


def test_every_layout_row_names_a_module() -> None:
    existing = set(_lines_by_module()) | set(COVERED_BY_DIRECTORY_ROW)
    stale = sorted(set(_layout_rows()) - existing)
    assert stale == [], f"docs/development.md lists modules that are gone: {stale}"
