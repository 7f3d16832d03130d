"""Every code sample of the docs runs, so the docs cannot drift from the code.

Each page's ```` ```python ```` blocks run in a child process
(``tests/docs_snippets.py`` says how, and which markers a block may carry);
the tutorial is followed step by step in a fresh project on the checkout's
``src/`` (``tests/docs_tutorial.py``: its files written, its ``manage.py``
commands run, its admin visited; ``tests/test_release.py`` follows it again on
the built wheel). ```` ```console ```` samples elsewhere are not
run. The reference pages are checked for completeness against the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signalbox import conf
from tests import docs_snippets, docs_tutorial
from tests import settings as test_settings
from tests.docs_snippets import DOCS, ROOT, Block

# The samples run on a SQLite database of their own whatever the run's
# database is, so they run once per Python and Django pair: in its SQLite run.
pytestmark = pytest.mark.skipif(
    test_settings.ENGINE != "sqlite", reason="runs with SIGNALBOX_TEST_DB=sqlite"
)

PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [page for page in PAGES if docs_snippets.python_blocks(page)]
TUTORIAL = docs_tutorial.TUTORIAL


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, **extra}


def _name(page: Path) -> str:
    return str(page.relative_to(DOCS))


def _run_samples(page: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tests.docs_snippets", str(page)]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=_env(SIGNALBOX_TEST_DB="sqlite", SIGNALBOX_TEST_DB_SUFFIX="_docs"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("page", [p for p in RUNNABLE if p != TUTORIAL], ids=_name)
def test_the_python_samples_of_the_page_run(page: Path) -> None:
    done = _run_samples(page)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_wrong_sample_fails_and_says_where(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- snippet-prelude\nfrom signalbox import Signal\n-->\n\n"
        "```python\nsignal = Signal()\n```\n\n"
        "```python\nsignal.send(sender=None, order=undefined)\n```\n"
    )
    done = _run_samples(page)
    assert done.returncode != 0
    assert "NameError: name 'undefined' is not defined" in done.stderr
    assert f"in the docs sample at {page}:9" in done.stderr  # its fence


def test_a_wrong_settings_sample_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '<!-- snippet: settings -->\n```python\nSIGNALBOX = {"LEASE_SECOND": 30}\n```\n'
    )
    done = _run_samples(page)
    assert done.returncode != 0
    assert "unknown keys ['LEASE_SECOND']" in done.stderr


# Skipping a sample is a decision someone made, with a reason: a new one
# changes this number and the list the failure prints.
SKIPPED = 2


def test_every_skipped_sample_says_why_and_is_counted() -> None:
    skipped = [
        block
        for page in PAGES
        for block in docs_snippets.python_blocks(page)
        if block.kind == "skip"
    ]
    listing = "\n".join(f"{block.where}: {block.arg}" for block in skipped)
    assert all(block.arg for block in skipped), listing
    assert len(skipped) == SKIPPED, f"{len(skipped)} samples are skipped:\n{listing}"


def test_a_misspelt_or_incomplete_marker_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: skip -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="needs an argument"):
        docs_snippets.blocks(page)
    page.write_text("<!-- snippet: skipp: typo -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="unknown snippet marker 'skipp'"):
        docs_snippets.blocks(page)
    page.write_text("```python\npass\n")
    with pytest.raises(ValueError, match="never closed"):
        docs_snippets.blocks(page)


# The tutorial, followed as a reader would, on the checkout's src/
# (tests/docs_tutorial.py says how; tests/test_release.py follows it again
# on the built wheel).


def test_the_tutorial_works_as_written(tmp_path: Path) -> None:
    env = _env()
    env.pop("SIGNALBOX_TEST_DB", None)
    reader = docs_tutorial.Reader(
        folder=tmp_path,
        python=Path(sys.executable),
        django_admin=(sys.executable, "-m", "django"),
        env=env,
    )
    followed = docs_tutorial.follow(reader)
    assert "django-admin startproject mysite ." in followed.commands
    assert "manage.py signalbox worker --burst" in followed.commands
    assert not followed.missing(), followed.output


def test_what_the_tutorial_test_expects_is_on_the_page() -> None:
    assert not docs_tutorial.prints_missing_from_the_page()


def test_the_tutorial_runs_only_its_reader_s_commands() -> None:
    block = Block(
        page=TUTORIAL,
        line=1,
        lang="console",
        code=(
            "$ pip install path/to/signalbox-0.1.whl\n"
            "$ django-admin startproject mysite .  # here\n"
            "$ python manage.py signalbox worker\n"
            "$ python manage.py signalbox worker --burst\n"
            "Worker stopped: 1 completed.\n"
            "$ python manage.py runserver\n"
        ),
    )
    assert list(docs_tutorial.commands(block)) == [
        ("django-admin", "startproject", "mysite", "."),
        ("manage.py", "signalbox", "worker", "--burst"),
    ]


def test_a_failing_tutorial_step_says_where(tmp_path: Path) -> None:
    page = tmp_path / "tutorial.md"
    page.write_text("Intro.\n\n```console\n$ python manage.py check\n```\n")
    reader = docs_tutorial.Reader(
        folder=tmp_path,
        python=Path(sys.executable),
        django_admin=(sys.executable, "-m", "django"),
        env=_env(),
    )
    failed = r"tutorial.md:3: .*manage.py check exited 2"
    with pytest.raises(AssertionError, match=failed):
        docs_tutorial.follow(reader, page)


# The reference pages name everything a user can set, type or be told.


def _text(*pages: str) -> str:
    return "\n".join((DOCS / page).read_text() for page in pages)


def test_every_setting_is_in_the_settings_reference() -> None:
    settings = _text("settings.md")
    missing = [key for key in conf.DEFAULTS if f"| `{key}` |" not in settings]
    assert not missing, f"docs/settings.md has no row for {missing}"


def test_every_check_id_is_in_the_checks_reference() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    ids = set(re.findall(r"""id=["'](signalbox\.[EWI]\d+)""", source))
    assert ids, "no check ids found in src/"
    checks = _text("reference/checks.md")
    missing = sorted(i for i in ids if f"`{i}`" not in checks)
    assert not missing, f"docs/reference/checks.md does not list {missing}"


def test_every_command_and_option_is_in_the_commands_reference() -> None:
    from django.core.management import load_command_class

    command = load_command_class("signalbox", "signalbox")
    parser = command.create_parser("manage.py", "signalbox")
    subparsers = next(
        action for action in parser._actions if action.dest == "subcommand"
    )
    reference = _text("reference/commands.md")
    missing = []
    for name, subparser in subparsers.choices.items():
        if f"## `signalbox {name}`" not in reference:
            missing.append(name)
        section = reference.split(f"## `signalbox {name}`")[-1].split("\n## ")[0]
        for action in subparser._actions:
            for option in action.option_strings:
                documented = f"`{option}" in section
                if (
                    option.startswith("--")
                    and option not in _DJANGOS
                    and not documented
                ):
                    missing.append(f"{name} {option}")
    assert not missing, f"docs/reference/commands.md does not document {missing}"


# Django's own options of every command, documented by Django.
_DJANGOS = {
    "--help",
    "--version",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
}
