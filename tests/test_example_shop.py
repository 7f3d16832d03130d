"""The example shop's own tests (example/shop/tests), written with signalbox.testing.

They run in a pytest of their own, in example/ with its settings
(example/pytest.ini), as a project runs its tests: the shop's app, its
receivers and its SQLite database, which the suite's settings do not have.
The shop is SQLite-only, so they run in the SQLite runs of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import settings as test_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "example"

pytestmark = [
    pytest.mark.skipif(
        not (EXAMPLE / "pytest.ini").exists(),
        reason="example/ is not here (an sdist holds no example)",
    ),
    pytest.mark.skipif(
        test_settings.ENGINE != "sqlite", reason="the example shop runs on SQLite"
    ),
]


def test_the_shops_tests_pass() -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout, result.stdout
