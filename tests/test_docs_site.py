"""The documentation site builds from docs/ with warnings as errors.

``mkdocs build --strict`` fails on a page the nav names that does not exist,
a link to a missing page or anchor, and anything mkdocstrings cannot render
from the docstrings. MkDocs comes from the ``docs`` dependency group, which
``make`` installs into both virtualenvs; without it the test is skipped
locally and fails under CI, so a missing tool never passes as a built site.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import settings as test_settings

ROOT = Path(__file__).resolve().parent.parent
# The site does not depend on the database: it is built in the SQLite runs.
pytestmark = pytest.mark.skipif(
    test_settings.ENGINE != "sqlite", reason="runs with SIGNALBOX_TEST_DB=sqlite"
)
MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if not MKDOCS.exists():
        message = f"{MKDOCS} is missing: the docs dependency group is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (make installs it)")
        pytest.skip(message)
    command = [MKDOCS, "build", "--strict", "--quiet", "--site-dir", tmp_path / "site"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    # The API reference is rendered from the docstrings, not left empty.
    assert "signalbox.receiver" in api
    assert "current_delivery" in api
