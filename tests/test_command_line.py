"""``manage.py signalbox``'s option parsing: Django's common options after any
subcommand's name, and what ``-v`` does."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from signalbox.management.commands.signalbox import Command

ROOT = Path(__file__).resolve().parents[1]

SUBCOMMANDS = {
    "list": [],
    "worker": ["--burst"],
    "relay": ["--once"],
    "status": [],
    "retry": ["--dead"],
    "prune": [],
}
"""Each subcommand, with what makes it return at once."""

COMMON = [
    ["--verbosity=0"],
    ["-v", "2"],
    ["--settings", "tests.worker_settings"],
    ["--pythonpath", str(ROOT)],
    ["--traceback"],
    ["--no-color"],
    ["--skip-checks"],
    ["--force-color"],
]
"""Django's common options, each as a person would type it."""


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m django signalbox ARGS`` on the test database."""
    return subprocess.run(
        [sys.executable, "-m", "django", "signalbox", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "SIGNALBOX_WORKER_DB": str(connection.settings_dict["NAME"]),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("subcommand", list(SUBCOMMANDS))
def test_every_subcommand_takes_the_common_options(subcommand: str) -> None:
    for option in COMMON:
        out = StringIO()
        call_command(
            "signalbox", subcommand, *SUBCOMMANDS[subcommand], *option, stdout=out
        )


@pytest.mark.django_db(transaction=True)
def test_common_options_after_a_subcommand_from_the_command_line() -> None:
    # On the real command line (`relay -v 2` was refused: "unrecognized
    # arguments"), all at once but --force-color, which --no-color excludes.
    everything = [word for option in COMMON[:-2] for word in option]
    for options in (everything, ["--force-color", "--skip-checks"]):
        done = manage("relay", "--once", *options)
        assert done.returncode == 0, (options, done.stderr)
        assert done.stdout.endswith("Handed over 0 deliveries.\n"), options


def parsed(*args: str) -> int:
    parser = Command().create_parser("manage.py", "signalbox")
    return int(parser.parse_args(list(args)).verbosity)


def test_an_option_before_the_subcommand_is_kept() -> None:
    assert parsed("-v", "2", "relay") == 2
    assert parsed("relay", "-v", "3") == 3
    assert parsed("-v", "0", "relay", "-v", "2") == 2  # the last one wins
    assert parsed("relay") == 1  # Django's default


@pytest.mark.django_db(transaction=True)
def test_verbosity_sets_the_level_of_signalbox_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("signalbox")
    before = logger.level

    def worker_logs(*option: str) -> set[int]:
        caplog.clear()
        call_command("signalbox", "worker", "--burst", *option, stdout=StringIO())
        assert logger.level == before  # put back afterwards
        return {r.levelno for r in caplog.records if r.name == "signalbox.worker"}

    assert logging.INFO in worker_logs("-v", "2")
    assert logging.INFO in worker_logs("-v", "3")
    logger.setLevel(logging.INFO)  # as a project's LOGGING may
    before = logging.INFO
    try:
        assert logging.INFO in worker_logs()  # 1 leaves it as it was
        assert logging.INFO not in worker_logs("-v", "0")
    finally:
        logger.setLevel(logging.NOTSET)


@pytest.mark.django_db(transaction=True)
def test_verbose_shows_signalbox_logs_without_logging_configured() -> None:
    # A fresh project's LOGGING has no handler for signalbox: -v 2 adds one.
    quiet = manage("worker", "--burst", "--settings", "tests.cli_settings")
    verbose = manage("worker", "--burst", "-v", "2", "--settings", "tests.cli_settings")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "INFO signalbox.worker:" not in quiet.stderr
    assert "INFO signalbox.worker:" in verbose.stderr


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_retried_nothing_exits_non_zero() -> None:
    done = manage("retry", "9999")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "9999: no such delivery" in done.stderr
