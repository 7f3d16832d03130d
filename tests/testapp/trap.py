"""A module no worker may ever import: importing it leaves a file behind.

Rows in the acceptance tests name ``tests.testapp.trap.boom`` as their
receiver; the worker must look keys up in its registry, never import them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Path(os.environ.get("SIGNALBOX_TRAP_FILE", "/tmp/signalbox-trap-imported")).write_text(
    "imported"
)


def boom(sender: object, **kwargs: Any) -> None:
    raise AssertionError("never called")
