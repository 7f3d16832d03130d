"""What every engine's acceptance tests share: settings, worker processes, rows.

Each ``tests/test_engine_<name>.py`` configures its engine as ``"remote"``,
commits rows through :data:`tests.testapp.remote_jobs.paid`, starts the
engine's own worker process (with tests/engine_worker_settings.py) and looks
at the rows and the ``Note`` ledger afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from signalbox import engines
from signalbox._states import State
from signalbox.models import Delivery
from tests.testapp import remote_jobs
from tests.testapp.models import Note, Order

ROOT = Path(__file__).resolve().parents[1]
FORGED = ["completed", "dead", "missing", "leased"]


@contextmanager
def remote_engine(engine: dict[str, Any], **extra: Any) -> Iterator[None]:
    """Configure ``engine`` as ``"remote"`` and connect the remote receivers."""
    settings = {
        "ENGINES": {
            "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
            "remote": engine,
        },
        "HANDOVER_GRACE_SECONDS": 0,
        "LEASE_SECONDS": 2,
    }
    with override_settings(SIGNALBOX=settings, **extra):
        remote_jobs.connect()
        try:
            yield
        finally:
            engines.flush()
            remote_jobs.disconnect()
            engines.reset()


def environment(engine: dict[str, Any], **extra: Any) -> dict[str, str]:
    """The environment of a worker process on this test's database."""
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        "DJANGO_SETTINGS_MODULE": "tests.engine_worker_settings",
        "SIGNALBOX_WORKER_DB": str(connection.settings_dict["NAME"]),
        "SIGNALBOX_WORKER_ENGINE": json.dumps(engine),
        "SIGNALBOX_WORKER_EXTRA": json.dumps(extra),
    }


def run_to_exit(args: list[str], env: dict[str, str], timeout: float = 30) -> str:
    """Run a worker that exits by itself (burst); fail with its output if not 0."""
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def send_order(number: str = "A-1") -> Order:
    order = Order.objects.create(number=number)
    remote_jobs.paid.send(sender=None, order=order)
    return order


def send_and_roll_back() -> None:
    try:
        with transaction.atomic():
            send_order()
            raise ZeroDivisionError
    except ZeroDivisionError:
        pass
    assert engines.flush()


def notes() -> list[list[str]]:
    return [note.text.split() for note in Note.objects.order_by("id")]


def forge(which: str, discard: Callable[[], object]) -> int:
    """Commit a row in state ``which`` (or none) and return the id to forge.

    ``discard`` throws away the genuine message the commit handed over.
    """
    send_order("F-1")
    assert engines.flush()
    discard()
    row = Delivery.objects.get()
    if which in ("completed", "dead"):
        Delivery.objects.filter(pk=row.pk).update(state=which)
    elif which == "leased":
        Delivery.objects.filter(pk=row.pk).update(
            state=State.EXECUTING,
            lease_token=uuid.uuid4(),
            lease_expires_at=timezone.now() + timedelta(hours=1),
        )
    return row.pk + 1000 if which == "missing" else row.pk


def states() -> list[str]:
    return [str(state) for state in Delivery.objects.values_list("state", flat=True)]
