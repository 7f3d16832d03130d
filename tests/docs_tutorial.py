"""Follow ``docs/tutorial.md`` as a reader would, with any Python that has signalbox.

The page's blocks are read with ``tests/docs_snippets.py``'s parser, and done
in order in an empty folder: a ``<!-- snippet: file PATH -->`` block is
written to PATH, an ``append PATH`` block appended to it, a ``shell`` block
run through ``manage.py shell -c``, and every ``python manage.py`` or
``django-admin`` line of a ```` ```console ```` block run (but the ones that
serve forever or ask questions: ``runserver``, ``createsuperuser``, a worker
without ``--burst``). Where the page starts the server, the reader's browser
is Django's test client: as a superuser, it fetches the admin pages the page
describes, and prints what they show. Other console lines (making the
virtualenv, installing the wheel) are the caller's to do its own way.

Two tests follow it: ``tests/test_docs_snippets.py`` with the checkout's
``src/``, and ``tests/test_release.py`` with a fresh virtualenv holding the
built wheel. Neither has its own copy of the tutorial's project, so neither
can drift from the page.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import docs_snippets
from tests.docs_snippets import DOCS, Block

TUTORIAL = DOCS / "tutorial.md"

# Commands of the page that serve forever or ask questions.
INTERACTIVE = frozenset({"runserver", "createsuperuser", "worker"})

# What the page says its steps print. Each is on the page as written
# (whitespace aside), so a reworded page fails until this list follows it.
PRINTS = (
    "background shop.receivers.write_invoice",
    "invoices after the send: 0",
    "Worker stopped: 1 completed.",
    "invoices after the worker: 1",
)

# Where the page starts the server: the admin pages it describes, each with
# what the page says it shows (step 7), fetched by a superuser.
ADMIN_VISIT = """
from django.contrib.auth import get_user_model
from django.test import Client
from signalbox.models import Delivery

user = get_user_model().objects.create_superuser("reader", "reader@example.com", "-")
browser = Client(HTTP_HOST="127.0.0.1")
browser.force_login(user)
delivery = Delivery.objects.get()
pages = {
    "/admin/": ["signalbox", "Deliveries"],
    "/admin/signalbox/delivery/": ["shop.receivers.write_invoice", "completed"],
    f"/admin/signalbox/delivery/{delivery.pk}/change/": ["Payload", "A-1"],
}
for path, words in pages.items():
    response = browser.get(path)
    html = response.content.decode()
    missing = [word for word in words if word not in html]
    shown = f"misses {missing}" if missing else f"shows {words}"
    print("admin page", path, response.status_code, shown)
"""
ADMIN_PAGES = 3


@dataclass(frozen=True)
class Reader:
    """Who follows the page: where, with which Python and ``django-admin``."""

    folder: Path
    python: Path
    django_admin: tuple[str, ...]
    env: dict[str, str]
    timeout: float = 120

    def run(self, command: list[str], block: Block) -> str:
        """Run one step of ``block`` in the folder; return what it printed.

        A step that exits non-zero or runs out of time fails the test, naming
        the page's line, the command and what it printed.
        """
        try:
            done = subprocess.run(
                command,
                cwd=self.folder,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise AssertionError(
                f"{block.where}: {shlex.join(command)} ran out of time:\n"
                f"{error.stdout!r}\n{error.stderr!r}"
            ) from error
        if done.returncode != 0:
            raise AssertionError(
                f"{block.where}: {shlex.join(command)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout


@dataclass(frozen=True)
class Followed:
    """What following the page did: the commands it ran and what they printed."""

    commands: tuple[str, ...]
    output: str

    def missing(self) -> list[str]:
        """The lines of ``PRINTS`` the steps did not print, and every admin
        page that did not answer 200 with what the page says it shows."""
        printed = _squeezed(self.output)
        absent = [line for line in PRINTS if _squeezed(line) not in printed]
        lines = self.output.splitlines()
        visits = [line for line in lines if line.startswith("admin page ")]
        absent += [line for line in visits if " 200 shows " not in line]
        if len(visits) != ADMIN_PAGES:
            absent.append(f"{ADMIN_PAGES} admin pages visited, not {len(visits)}")
        return absent


def commands(block: Block) -> Iterator[tuple[str, ...]]:
    """The ``python manage.py`` and ``django-admin`` lines of a console block,
    each as its program (``manage.py`` or ``django-admin``) and its arguments;
    the interactive ones and every other program's lines left out."""
    for line in block.code.splitlines():
        if not line.startswith("$ "):
            continue  # what the previous command printed
        words = shlex.split(line.removeprefix("$ "), comments=True)
        if words[:2] == ["python", "manage.py"]:
            program, arguments = "manage.py", words[2:]
        elif words[:1] == ["django-admin"]:
            program, arguments = "django-admin", words[1:]
        else:
            continue
        if INTERACTIVE.intersection(arguments) and "--burst" not in arguments:
            continue
        yield (program, *arguments)


def follow(reader: Reader, page: Path = TUTORIAL) -> Followed:
    """Do what ``page`` says, in order, in ``reader.folder``.

    Returns the commands run (as the page spells them) and everything they
    printed; raises ``AssertionError`` at the first step that fails.
    """
    ran: list[str] = []
    printed: list[str] = []
    for block in docs_snippets.blocks(page):
        if block.lang == "console":
            for program, *arguments in commands(block):
                ran.append(shlex.join([program, *arguments]))
                printed.append(reader.run(_argv(reader, program, arguments), block))
            if _serves(block):
                ran.append(f"the admin, in a browser (at {block.where})")
                visit = [str(reader.python), "manage.py", "shell", "-c", ADMIN_VISIT]
                printed.append(reader.run(visit, block))
        elif block.kind in {"file", "append"}:
            _write(reader.folder / block.arg, block)
        elif block.kind == "shell":
            ran.append(f"manage.py shell (at {block.where})")
            shell = [str(reader.python), "manage.py", "shell", "-c", block.code]
            printed.append(reader.run(shell, block))
    return Followed(commands=tuple(ran), output="".join(printed))


def _write(target: Path, block: Block) -> None:
    """Write a ``file`` block to ``target``, or add an ``append`` block to it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if block.kind == "append":
        with target.open("a") as file:
            file.write("\n" + block.code)
    else:
        target.write_text(block.code)


def _serves(block: Block) -> bool:
    return any(
        line.split() == ["$", "python", "manage.py", "runserver"]
        for line in block.code.splitlines()
    )


def _argv(reader: Reader, program: str, arguments: list[str]) -> list[str]:
    if program == "manage.py":
        return [str(reader.python), "manage.py", *arguments]
    return [*reader.django_admin, *arguments]


def _squeezed(text: str) -> str:
    """``text`` with every run of whitespace one space: the page aligns
    columns its own way."""
    return re.sub(r"\s+", " ", text)


def prints_missing_from_the_page(page: Path = TUTORIAL) -> list[str]:
    """The lines of ``PRINTS`` that ``page`` does not show."""
    shown = _squeezed(page.read_text())
    return [line for line in PRINTS if _squeezed(line) not in shown]
