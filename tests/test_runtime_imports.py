"""The runtime (``signalbox.worker``) never imports the engines.

Engines use the runtime and the outbox; if the runtime or the outbox
imported ``signalbox.engines`` back, the two would be one tangle again (as
they were: the worker asked the engines which aliases it served, and the
engines' task body imported the worker). A fresh interpreter shows what a
package pulls in, whatever this test process has imported already.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

IMPORTS = """
import sys, types
from pathlib import Path

import django
from django.apps import AppConfig
from django.conf import settings

# signalbox's own __init__ imports the dispatch layer, which rightly uses
# the engines (a send hands rows over), and its app's ready() loads them:
# neither runs here, so what is imported below is what {module} needs.
root = types.ModuleType("signalbox")
root.__path__ = [str(Path({src!r}) / "signalbox")]
sys.modules["signalbox"] = root


class Models(AppConfig):
    name = label = "signalbox"


settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "__main__.Models"],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3"}}}},
)
django.setup()


class Refuse:
    def find_spec(self, name, path, target=None):
        if name.split(".")[:2] == ["signalbox", "engines"]:
            raise ImportError(f"{module} imported {{name}}")


sys.meta_path.insert(0, Refuse())
import {module}
"""


def imports(module: str) -> subprocess.CompletedProcess[str]:
    """``module`` imported in a fresh interpreter that refuses to import
    ``signalbox.engines``."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(SRC),
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", IMPORTS.format(module=module, src=str(SRC))],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("module", ["signalbox.worker", "signalbox.outbox"])
def test_the_runtime_and_the_outbox_do_not_import_the_engines(module: str) -> None:
    result = imports(module)
    assert result.returncode == 0, result.stderr


def test_the_check_sees_an_import_of_the_engines() -> None:
    # The same script, on a module that does import them: it must fail, or
    # the test above could pass for a reason of its own.
    result = imports("signalbox.engines.relay")
    assert result.returncode != 0
    assert "signalbox.engines.relay imported signalbox.engines" in result.stderr
