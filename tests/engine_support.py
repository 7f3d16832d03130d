"""What every engine's acceptance tests share: settings, worker processes, rows.

Each ``tests/test_engine_<name>.py`` configures its engine as ``"remote"``,
commits rows through :data:`tests.testapp.remote_jobs.paid`, starts the
engine's own worker process (with tests/engine_worker_settings.py) and looks
at the rows and the ``Note`` ledger afterwards.

A worker that lives for a whole module must have nothing left to run when a
test ends: the tables are emptied between tests, and SQLite hands the next
test's rows the same ids, which a leftover message would then name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from signalbox import engines
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.models import Delivery
from tests.testapp import remote_jobs
from tests.testapp.models import Note, Order

ROOT = Path(__file__).resolve().parents[1]
FORGED = ["completed", "dead", "missing", "leased", "other_engine", "other_database"]
"""What a forged message names: a row already completed, dead, deleted or
leased to someone else, another engine's row (the message names that
engine), or a due row of the engine's on a database alias that is not one of
``OUTBOX_DATABASES`` (the message names that alias)."""
OTHER_ENGINE = "default"  # the embedded worker, configured in every process


class Forged(NamedTuple):
    """What a forged message names: the row's id, an engine and a database."""

    pk: int
    engine: str = "remote"
    using: str = "default"


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
            _handoff.flush()
            remote_jobs.disconnect()
            engines.reset()


def environment(engine: dict[str, Any], **extra: Any) -> dict[str, str]:
    """The environment of a worker process on this test's database."""
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        "DJANGO_SETTINGS_MODULE": "tests.engine_worker_settings",
        "SIGNALBOX_WORKER_DB": str(connection.settings_dict["NAME"]),
        "SIGNALBOX_WORKER_OTHER_DB": str(connections["other"].settings_dict["NAME"]),
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
    assert _handoff.flush()


def notes() -> list[list[str]]:
    return [note.text.split() for note in Note.objects.order_by("id")]


def forge(which: str) -> Forged:
    """Commit a row already ``which`` (or deleted) and return what a forged
    message names to find it (see :data:`FORGED`).

    The row changes state in the transaction that writes it, so the genuine
    message its commit hands over is as stale as the forged one. The row on
    the other database is due: its genuine message names that alias too.
    """
    if which == "other_database":
        with transaction.atomic(using="other"):
            order = Order.objects.using("other").create(number="F-1")
            remote_jobs.paid.send(sender=None, order=order, using="other")
        assert _handoff.flush()
        return Forged(Delivery.objects.using("other").get().pk, using="other")
    with transaction.atomic():
        send_order("F-1")
        row = Delivery.objects.get()
        rows = Delivery.objects.filter(pk=row.pk)
        if which in ("completed", "dead"):
            rows.update(state=which)
        elif which == "leased":
            rows.update(
                state=State.EXECUTING,
                lease_token=uuid.uuid4(),
                lease_expires_at=timezone.now() + timedelta(hours=1),
            )
        elif which == "missing":
            rows.delete()
        elif which == "other_engine":
            rows.update(engine=OTHER_ENGINE)
    assert _handoff.flush()
    return Forged(row.pk, OTHER_ENGINE if which == "other_engine" else "remote")


def state_of(pk: int, using: str = "default") -> str | None:
    row = Delivery.objects.using(using).filter(pk=pk).first()
    return None if row is None else str(row.state)


def started(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A long-running worker process, in its own process group (it may fork
    children); :func:`stopped` ends them all."""
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stopped(process: subprocess.Popen[str]) -> str:
    """Kill a worker's process group and return what it printed.

    The tests are done with it: its rows are finished, so no graceful stop.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.communicate(timeout=10)[0]


def wait_for_state(pk: int, state: str, timeout: float = 20.0) -> None:
    wait_for(lambda: state_of(pk) == state, timeout)


def sentinel_ran(number: str = "S-1") -> None:
    """Send one more order and wait until it ran: what was queued before it did."""
    order = send_order(number)
    assert _handoff.flush()
    wait_for(lambda: Note.objects.filter(text__startswith=order.number).exists())


def retried_by_the_relay_then_dead() -> None:
    """A receiver that always fails, run by a worker of the module's own:
    its first failure leaves the row retryable (the broker schedules
    nothing), the relay hands it over again, and the second is its last."""
    remote_jobs.refused.send(sender=None)
    assert _handoff.flush()
    pk = Delivery.objects.get().pk
    wait_for_state(pk, State.RETRYABLE)
    assert Relay().run_once() == 1
    wait_for_state(pk, State.DEAD)
    assert Delivery.objects.get().reason == "max_attempts"
    assert [n[:2] for n in notes()] == [["fail", "1"], ["fail", "2"]]
