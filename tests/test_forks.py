"""A child forked while a background thread holds a lock can still use it.

``fork()`` copies each lock as it is; one that another thread of the parent
held stays locked in the child for good. The hand-over thread holds its
queue's lock (and the broker client's, for a whole publish), the lease
keeper its own: a web server that forks workers from a process that had
already sent, or a Celery parent that ran a delivery, would hand children
locks that hang their first send. Each test forks while a thread holds the
lock, and the child must get through within a few seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from signalbox import engines, outbox
from signalbox.engines import Kept
from signalbox.engines._handoff import Publisher
from signalbox.worker._acks import Acknowledger
from signalbox.worker._keeper import TaskKeeper

pytestmark = pytest.mark.filterwarnings(
    # Python 3.12+ warns that forking a threaded process may deadlock the
    # child: that is what these tests show does not happen.
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def exit_code_of_child_forked_while_held(
    lock: Any, in_child: Callable[[], object]
) -> int:
    """Fork while another thread holds ``lock``; run ``in_child`` in the
    child, which SIGALRM ends after 5 s; return the child's exit code."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child leaves with os._exit)
            code = 1
            try:
                signal.alarm(5)
                in_child()
                code = 0
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def claimed() -> outbox.Claimed:
    return outbox.Claimed(
        id=1,
        signal="s",
        receiver="r",
        payload={},
        attempt=1,
        max_attempts=3,
        enqueued_at=datetime.now(UTC),
        token=uuid.uuid4(),
    )


def test_the_hand_over_queue() -> None:
    publisher = Publisher()
    code = exit_code_of_child_forked_while_held(
        publisher._changed, lambda: publisher.submit([])
    )
    assert code == 0


def test_a_broker_client_being_published_through() -> None:
    kept = Kept(make=object, close=lambda client: None)
    with kept.use() as parents:
        pass

    def in_child() -> None:
        with kept.use() as childs:
            assert childs is not parents  # never the parent's socket

    assert exit_code_of_child_forked_while_held(kept._lock, in_child) == 0


def test_the_engines_being_built() -> None:
    def in_child() -> None:
        assert engines._lock.acquire(timeout=2)

    assert exit_code_of_child_forked_while_held(engines._lock, in_child) == 0


def test_the_deferred_acknowledgements() -> None:
    keeper = TaskKeeper()
    parents = Acknowledger("default")  # not started: no thread writes here
    keeper._threads["default"] = parents

    def in_child() -> None:
        # The parent's are the parent's to write; the child starts its own.
        assert keeper._threads == {}
        assert keeper._lock.acquire(timeout=2)

    assert exit_code_of_child_forked_while_held(keeper._lock, in_child) == 0
    assert keeper._threads == {"default": parents}


def test_the_lease_keeper() -> None:
    keeper = TaskKeeper()  # its thread would start with the first delivery
    keeper.leases.hold(claimed(), "default")  # the parent's

    def in_child() -> None:
        mine = claimed()
        with keeper.holding(mine, "default"):
            assert keeper.leases.claims() == [mine]

    assert exit_code_of_child_forked_while_held(keeper.leases._lock, in_child) == 0
