"""A module no worker may ever import: importing it leaves a file behind.

Rows in the bad-input scenario name ``tests.reliability.trap.boom`` as their
receiver; a worker looks keys up in its registry and must never import one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Path(os.environ.get("SIGNALBOX_REL_TRAP_FILE", "/tmp/signalbox-rel-trap")).write_text(
    "imported"
)


def boom(sender: object, **kwargs: Any) -> None:
    raise AssertionError("never called")
