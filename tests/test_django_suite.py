"""Django's own dispatch and signals suites pass with every signal signalbox's.

The suites are not in Django's wheel, so they come from the sdist of the
installed version, fetched once with pip into a cache outside the checkout
(``SIGNALBOX_DJANGO_TESTS_CACHE``, default ``~/.cache/signalbox``) and reused.
Django's ``runtests.py`` then runs them in a child process in which every
``django.dispatch.Signal``, those Django made at import (``post_save``,
``request_finished``, ...) and those the suites make, is a
``signalbox.Signal`` (see ``tests/django_suite/swap.py``). Without the
network the test is skipped, but fails under CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("dispatch", "signals")


def _cache() -> Path:
    default = Path.home() / ".cache" / "signalbox"
    return Path(os.environ.get("SIGNALBOX_DJANGO_TESTS_CACHE", default))


def _pip() -> list[str] | None:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for python in ("python3", "python"):
        found = shutil.which(python)
        if found is not None:
            return [found, "-m", "pip"]
    return None


def _wanted(member: tarfile.TarInfo, top: str) -> bool:
    parts = Path(member.name).parts
    if len(parts) < 3 or parts[0] != top or parts[1] != "tests":
        return False
    return parts[2] in SUITES or (len(parts) == 3 and parts[2].endswith(".py"))


def _fetch(version: str, into: Path) -> None:
    """Unpack runtests.py and the suites of Django ``version``'s sdist to ``into``."""
    pip = _pip()
    if pip is None:
        raise RuntimeError("no pip to download Django's sdist with")
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                *pip,
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--ignore-requires-python",
                f"Django=={version}",
                "--dest",
                scratch,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (sdist,) = Path(scratch).glob("*.tar.gz")
        top = f"{sdist.name.removesuffix('.tar.gz')}"
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if _wanted(m, top)]
            archive.extractall(unpacked, members=members, filter="data")
        into.parent.mkdir(parents=True, exist_ok=True)
        try:  # a rename, so a run that fetches alongside never sees half a tree
            (unpacked / top / "tests").rename(into)
        except OSError:
            if not (into / "runtests.py").exists():
                raise


@pytest.fixture(scope="module")
def django_tests() -> Path:
    version = django.get_version()
    tests = _cache() / f"django-{version}-tests"
    if not (tests / "runtests.py").exists():
        try:
            _fetch(version, tests)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as error:
            why = f"cannot fetch Django {version}'s test suites: {error}"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
    return tests


def test_djangos_dispatch_and_signals_suites_pass_with_signalbox(django_tests):
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # runtests.py uses its own settings
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    command = [
        sys.executable,
        str(ROOT / "tests" / "django_suite" / "run.py"),
        str(django_tests),
        *SUITES,
        "--parallel",
        "1",
        "--noinput",
    ]
    done = subprocess.run(
        command, cwd=django_tests, env=env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "signalbox: swapped" in output, output
    assert "\nOK" in output, output
