"""What a process's engine tasks leave running behind them.

While an engine's task runs a delivery, its lease must be kept alive; once
a task in a stream of them completes, its acknowledgement may wait a moment
for the next ones' (see :func:`~signalbox.worker.run_task`'s ``defer_ack``).
:data:`keeper` does both for the whole process with one thread per database
(an :class:`~signalbox.worker._acks.Acknowledger` that beats every third of
a lease), started with the first delivery on it and holding no connection
while nothing is held or waiting. A forked child starts its own.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from signalbox import _connections, _forks, _outage, conf, outbox
from signalbox.worker._acks import Acknowledger
from signalbox.worker._leases import Leases

logger = logging.getLogger("signalbox.worker")

ACK_DELAY = 0.02
"""Seconds a task's deferred completion waits, gathering the ones that
follow, before the keeper writes them in one statement."""

WRITE_WAIT = 5.0
"""Seconds :func:`write_acks` waits for the deferred completions of each
database to be written."""


class TaskKeeper:
    """The leases this process's engine tasks hold and the completions they
    deferred, kept by one thread per database."""

    def __init__(self) -> None:
        self.leases = Leases()
        self._lock = threading.Lock()
        self._threads: dict[str, Acknowledger] = {}
        self._ended = 0.0  # monotonic: when the last delivery ended
        _forks.renew_in_children(self, TaskKeeper._forget_parent)

    def _forget_parent(self) -> None:
        # The parent's leases and completions are its own (its threads may
        # have held these locks at the fork); the child starts its own.
        self._lock, self._threads = threading.Lock(), {}
        self.leases.forget_parent()

    @contextmanager
    def holding(self, claimed: outbox.Claimed, using: str) -> Iterator[None]:
        """A context in which ``claimed``'s lease is kept alive."""
        self._thread(using)
        self.leases.hold(claimed, using)
        try:
            yield
        finally:
            self.leases.let_go(claimed)

    def defer(self, claimed: outbox.Claimed, *, using: str) -> None:
        """Have ``claimed``'s completion written :data:`ACK_DELAY` or so from
        now, with the others deferred meanwhile."""
        self._thread(using).add(claimed)

    def streaming(self, within: float = ACK_DELAY) -> bool:
        """Whether the last delivery ended less than ``within`` ago: one that
        follows it that closely can expect others to follow, whose
        completions its own can wait for (a lone delivery writes its own)."""
        return time.monotonic() - self._ended < within

    def ended(self) -> None:
        """Note that a delivery just ended (see :meth:`streaming`)."""
        self._ended = time.monotonic()

    def write(self) -> None:
        """Write every deferred completion now and wait for it (up to
        :data:`WRITE_WAIT` seconds per database, a write under way
        included): a process that ends right after this returns ends with
        every completion it ran written."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.flush(WRITE_WAIT)

    def _thread(self, using: str) -> Acknowledger:
        with self._lock:
            thread = self._threads.get(using)
            if thread is None:
                thread = self._threads[using] = Acknowledger(
                    using,
                    name="signalbox-leases",
                    affected="deferred completions",
                    gather=lambda: ACK_DELAY,
                    retry=False,
                    beat=functools.partial(self._beat, using),
                    every=_third_of_a_lease,
                )
                thread.start()
            return thread

    def _beat(self, using: str) -> bool:
        """Extend the leases held on ``using``; whether any are held."""
        try:
            self.leases.extend(using)
        except Exception as error:  # the next beat tries again
            if not _outage.lost(
                error, using=using, affected="lease keeping", log=logger
            ):
                logger.warning("Extending leases failed: %s", error)
        finally:
            _connections.tidy()
        return self.leases.holds(using)


def _third_of_a_lease() -> float:
    return max(conf.get().lease.total_seconds() / 3, 0.05)


keeper = TaskKeeper()
"""This process's keeper of its engine tasks' leases and completions."""


def write_acks() -> None:
    """Write the completions this process's engine tasks deferred, and wait
    for them: at exit, and on Celery's ``worker_process_shutdown``."""
    keeper.write()
    _connections.tidy()


atexit.register(write_acks)
