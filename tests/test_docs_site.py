"""The documentation site builds from docs/ with warnings as errors.

``mkdocs build --strict`` fails on a page the nav names that does not exist,
a link to a missing page or anchor, and anything mkdocstrings cannot render
from the docstrings. MkDocs comes from the ``docs`` dependency group, which
``make`` installs into both virtualenvs; without it the test is skipped
locally and fails under CI, so a missing tool never passes as a built site.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import settings as test_settings

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"
# The site does not depend on the database: it is built in the SQLite runs.
pytestmark = pytest.mark.skipif(
    test_settings.ENGINE != "sqlite", reason="runs with SIGNALBOX_TEST_DB=sqlite"
)


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``project`` into ``site``.

    Never with ``--quiet``: MkDocs counts warnings through its log, so a quiet
    strict build passes whatever it warned about.
    """
    if not MKDOCS.exists():
        message = f"{MKDOCS} is missing: the docs dependency group is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (make installs it)")
        pytest.skip(message)
    command = [MKDOCS, "build", "--strict", "--site-dir", site]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    # The API reference is rendered from the docstrings, not left empty, and
    # Sphinx roles in them read as code, not as ":class:".
    assert "signalbox.receiver" in api
    assert "current_delivery" in api
    assert ":class:" not in api


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project)
    (project / "src").symlink_to(ROOT / "src")
    with (project / "docs" / "index.md").open("a") as page:
        page.write("\n[a page that is not there](nowhere.md)\n")
    done = _build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "nowhere.md" in done.stderr
