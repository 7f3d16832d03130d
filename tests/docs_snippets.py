"""Run the Python samples of one documentation page, as the docs show them.

``python -m tests.docs_snippets docs/PAGE.md`` runs the page's fenced
```` ```python ```` blocks in order, in one namespace: a module of its own
(``docs_snippets.<page>``, so a background receiver defined there has a key a
worker finds), with Django set up on ``tests.settings`` and a fresh SQLite test
database. ``tests/test_docs_snippets.py`` runs it once per page, in a child
process, so what a page connects never reaches another page or the suite.

An HTML comment on the line before a block (invisible on the site and on
GitHub) says what else the block is:

``<!-- snippet: skip: REASON -->``
    not run; the reason is required and the test lists every skipped block.
``<!-- snippet: settings -->``
    a ``settings.py`` excerpt: it runs in a namespace holding the page's
    names and the test settings' values (so ``INSTALLED_APPS += [...]`` and
    ``BASE_DIR / "db.sqlite3"`` work); the settings it changes (all but
    ``INSTALLED_APPS`` and ``DATABASES``) are applied with
    ``override_settings`` for the rest of the page, and signalbox's settings
    and engines are loaded from them, so a wrong ``SIGNALBOX`` fails.
``<!-- snippet: file PATH -->``, ``append PATH``, ``shell``
    the tutorial's files and ``manage.py shell`` input: ``tests/docs_tutorial.py``
    builds the project from them and runs it (on the checkout in
    ``tests/test_docs_snippets.py``, on the built wheel in
    ``tests/test_release.py``); elsewhere the block is run like any other.

A page may also hold one hidden prelude, run before its first block, for the
names its samples take as given (``order_paid``, a model):

    <!-- snippet-prelude
    from tests.testapp.models import Order
    -->
"""

from __future__ import annotations

import copy
import os
import re
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_MARKER = re.compile(r"<!--\s*snippet:\s*(?P<kind>[a-z]+)\s*:?\s*(?P<arg>.*?)\s*-->")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
_PRELUDE = re.compile(r"<!--\s*snippet-prelude\s*\n(?P<code>.*?)-->", re.DOTALL)
_FENCED = re.compile(r"^(\s*)```[\w-]+\n.*?^\1```\s*$", re.DOTALL | re.MULTILINE)
KINDS = frozenset({"skip", "settings", "file", "append", "shell"})
# Settings a running process cannot take on: a settings sample's values for
# them are run (so they must be valid Python) but not applied.
_FIXED = frozenset({"INSTALLED_APPS", "DATABASES", "BASE_DIR"})


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, code and marker."""

    page: Path
    line: int
    lang: str
    code: str
    kind: str = ""
    arg: str = ""

    @property
    def where(self) -> str:
        """``page:line`` of the block's opening fence, for messages."""
        page = (
            self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        )
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker on the line before it.

    Raises ``ValueError`` for an unknown marker, a ``skip`` without a reason,
    or a fence that is never closed: a typo must not turn into a silent skip.
    """
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening or not opening["lang"]:
            index += 1
            continue
        indent, start = opening["indent"], index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index].removeprefix(indent))
            index += 1
        if index == len(lines):
            raise ValueError(f"{page}:{start + 1}: the fence is never closed")
        kind, arg = _marker(page, lines[start - 1] if start else "", start)
        code = "\n".join(body) + "\n"
        found.append(Block(page, start + 1, opening["lang"], code, kind, arg))
        index += 1
    return found


def _marker(page: Path, line: str, start: int) -> tuple[str, str]:
    match = _MARKER.search(line)
    if match is None:
        return "", ""
    kind, arg = match["kind"], match["arg"]
    if kind not in KINDS:
        raise ValueError(f"{page}:{start}: unknown snippet marker {kind!r}")
    if kind in {"skip", "file", "append"} and not arg:
        raise ValueError(f"{page}:{start}: `snippet: {kind}` needs an argument")
    return kind, arg


def prelude(page: Path) -> str:
    """The page's hidden prelude, or ``""``; one shown inside a fenced block
    (as docs/development.md shows the convention) is not one."""
    match = _PRELUDE.search(_FENCED.sub("", page.read_text()))
    return match["code"] if match else ""


def python_blocks(page: Path) -> list[Block]:
    """The page's Python blocks, skipped ones included."""
    return [block for block in blocks(page) if block.lang == "python"]


def run_page(page: Path) -> int:
    """Run the page's Python blocks; return how many ran.

    An exception propagates with the block's place added as a note.
    """
    from django.conf import settings
    from django.test.utils import override_settings

    place = page.relative_to(DOCS) if page.is_relative_to(DOCS) else Path(page.name)
    name = "docs_snippets." + re.sub(r"\W", "_", str(place.with_suffix("")))
    module = types.ModuleType(name)
    sys.modules[name] = module
    namespace = module.__dict__
    _run(prelude(page), namespace, f"{page}: prelude")
    ran = 0
    for block in python_blocks(page):
        if block.kind == "skip":
            continue
        if block.kind == "settings":
            current = {k: getattr(settings, k) for k in dir(settings) if k.isupper()}
            excerpt = {**namespace, "BASE_DIR": Path(tempfile.gettempdir())}
            excerpt.update(copy.deepcopy(current))
            _run(block.code, excerpt, block.where)
            changed = {
                key: value
                for key, value in excerpt.items()
                if key.isupper()
                and key not in _FIXED
                and (key not in current or current[key] != value)
            }
            _apply(override_settings(**changed), block)
        else:
            _run(block.code, namespace, block.where)
        ran += 1
    return ran


def _run(code: str, namespace: dict[str, object], where: str) -> None:
    try:
        exec(compile(code, where, "exec"), namespace)
    except BaseException as error:
        error.add_note(f"in the docs sample at {where}")
        raise


def _apply(override: object, block: Block) -> None:
    from signalbox import conf, engines

    override.enable()  # type: ignore[attr-defined]
    try:
        conf.get()
        engines.load_all()
    except BaseException as error:
        error.add_note(f"the SIGNALBOX of the settings sample at {block.where}")
        raise


def main(page_name: str) -> None:
    """Set Django up on a fresh test database and run one page's samples."""
    import django
    from django.db import connection
    from django.test.utils import setup_test_environment

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    setup_test_environment()
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0)
    try:
        ran = run_page(Path(page_name).resolve())
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
    print(f"{ran} samples ran")


if __name__ == "__main__":
    main(sys.argv[1])
