"""The release: what ``python -m build`` makes, and a fresh project installing it.

The wheel and the sdist are built from this checkout once per module; the
sdist first, then the wheel from the sdist (as ``python -m build`` does), so
a file the sdist forgets breaks the wheel. A fresh virtualenv installs the
wheel, and ``docs/tutorial.md`` is followed in it step by step
(``tests/docs_tutorial.py``, the same steps ``tests/test_docs_snippets.py``
follows on the checkout): ``django-admin startproject``, the page's files,
``migrate``, a send, ``signalbox worker --burst``, the admin.

The build runs without an isolated environment, with the locked hatchling of
the ``release`` group, and the fresh virtualenv installs from uv's cache what
the lock pinned, so the module needs no network once ``make`` has synced.

It runs once in ``make test`` (the first pair's SQLite run sets
``SIGNALBOX_RELEASE``), and alone with ``make release-check``.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

import signalbox
from tests import docs_tutorial

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"
PREFIX = f"signalbox-{signalbox.__version__}"

# What the sdist may hold at its top level (tool.hatch.build.targets.sdist).
SDIST_TOP = {
    "src",
    "tests",
    "docs",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "pyproject.toml",
    "PKG-INFO",
    ".gitignore",
}
# What a run of the suite, a virtualenv or a benchmark leaves in a checkout.
LEFTOVERS = ("__pycache__", ".pyc", ".hypothesis", ".sqlite3", ".venv", "results")


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This process's environment without what ties a child to the checkout.

    pytest-django exports the suite's settings module, and a virtualenv or
    PYTHONPATH would put the checkout's package before the installed one.
    """
    dropped = {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    # A throwaway virtualenv may share files with uv's cache (make's copy
    # mode protects the long-lived ones); uv copies where it cannot link.
    env.update(UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="hardlink", PYTHONUTF8="1")
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", out]
    _run([*command, ROOT], cwd=ROOT, env=_clean_env())
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Built(wheel=wheel, sdist=sdist)


def test_the_artifacts_pass_twine_check(built: Built) -> None:
    # --strict: a warning (a README the index cannot render) fails too.
    command = [sys.executable, "-m", "twine", "check", "--strict"]
    output = _run([*command, built.wheel, built.sdist], cwd=ROOT, env=_clean_env())
    assert output.count("PASSED") == 2, output


def test_the_wheel_ships_the_package_typed_with_its_migrations(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        info = email.message_from_bytes(wheel.read(f"{PREFIX}.dist-info/METADATA"))
    for expected in (
        "signalbox/py.typed",
        "signalbox/migrations/0001_initial.py",
        "signalbox/management/commands/signalbox.py",
        "signalbox/testing/pytest_plugin.py",
        f"{PREFIX}.dist-info/licenses/LICENSE",
    ):
        assert expected in names, f"{expected} is missing from the wheel"
    assert not [name for name in names if name.startswith(("tests/", "docs/"))]
    # Every file of the package: a module, a migration, a template or data
    # file a later change adds is shipped too.
    package = ROOT / "src" / "signalbox"
    sources = {
        f"signalbox/{path.relative_to(package).as_posix()}"
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert not sources - names, f"missing from the wheel: {sorted(sources - names)}"
    assert info["Version"] == signalbox.__version__
    classifiers = set(info.get_all("Classifier"))
    for python in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {python}" in classifiers
    for django in ("5.2", "6.1"):
        assert f"Framework :: Django :: {django}" in classifiers
    assert "Typing :: Typed" in classifiers


def test_the_sdist_holds_the_sources_and_no_leftovers(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = [name for name in sdist.getnames() if name != PREFIX]
    assert all(name.startswith(f"{PREFIX}/") for name in names), names
    inside = [name.removeprefix(f"{PREFIX}/") for name in names]
    strays = sorted({name.split("/")[0] for name in inside} - SDIST_TOP)
    assert not strays, f"the sdist holds {strays}"
    junk = [name for name in inside if any(bit in name for bit in LEFTOVERS)]
    assert not junk, f"the sdist holds leftovers: {junk[:10]}"
    for expected in ("src/signalbox/py.typed", "CHANGELOG.md", "tests/conftest.py"):
        assert expected in inside, f"{expected} is missing from the sdist"


@dataclass(frozen=True)
class Project:
    """A fresh virtualenv holding the wheel, and an empty folder for a project."""

    python: Path
    django_admin: Path
    folder: Path
    env: dict[str, str]

    def manage(self, *arguments: str) -> str:
        """Run ``manage.py`` with these arguments, returning what it printed."""
        return _run([self.python, "manage.py", *arguments], self.folder, self.env)


@pytest.fixture(scope="module")
def project(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Project:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: make installs it (make release-check).")
    where = tmp_path_factory.mktemp("fresh")
    env = _clean_env()
    venv = tmp_path_factory.mktemp("venv")
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv], where, env)
    python = venv / "bin" / "python"
    # The Django this pair locked, and only the wheel's own dependencies.
    django = f"Django=={metadata.version('django')}"
    install = [UV, "pip", "install", "--quiet", "--python", python]
    _run([*install, built.wheel, django], where, env)
    return Project(
        python=python, django_admin=venv / "bin" / "django-admin", folder=where, env=env
    )


SHOW_INSTALLED = """
import importlib.metadata, signalbox
print(signalbox.__file__)
print(importlib.metadata.version("signalbox"), signalbox.__version__)
"""


def test_the_installed_wheel_is_what_runs(project: Project) -> None:
    command = [project.python, "-c", SHOW_INSTALLED]
    where, versions = _run(command, project.folder, project.env).splitlines()
    assert "site-packages" in where, where
    assert not where.startswith(str(ROOT)), where
    assert versions.split() == [signalbox.__version__] * 2


SHOW_PLUGIN = """
import importlib.metadata
[plugin] = importlib.metadata.entry_points(group="pytest11", name="signalbox")
print(plugin.value, plugin.dist.name)
"""


def test_the_installed_wheel_registers_the_pytest_plugin(project: Project) -> None:
    # What pytest finds in an installed signalbox (the plugin itself is
    # tested in test_pytest_plugin.py; this virtualenv has no pytest).
    output = _run([project.python, "-c", SHOW_PLUGIN], project.folder, project.env)
    assert output.split() == ["signalbox.testing.pytest_plugin", "signalbox"]


def test_the_tutorial_works_from_the_wheel(project: Project) -> None:
    # docs/tutorial.md step by step, but its first step: the fixture made the
    # virtualenv and installed the wheel its own way (offline, from uv's cache).
    reader = docs_tutorial.Reader(
        folder=project.folder,
        python=project.python,
        django_admin=(str(project.django_admin),),
        env=project.env,
    )
    followed = docs_tutorial.follow(reader)
    for step in ("migrate", "signalbox worker --burst", "signalbox status"):
        assert f"manage.py {step}" in followed.commands, followed.commands
    assert not followed.missing(), followed.output
    # Stricter than the page: the wheel's checks raise no warning either.
    project.manage("check", "--fail-level", "WARNING")
