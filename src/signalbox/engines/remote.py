"""The body of every engine's task: run the delivery a message names.

An engine's message carries only a delivery id (and the engine's and the
database's aliases). Neither alias is taken on trust: the engine must be one
this process configures for the task's own engine class, and the database
one of ``OUTBOX_DATABASES``, or the message runs nothing. :func:`deliver`
then claims the row under a lease, so a broker's redelivery, a second
hand-over or a forged message finds it running, finished, not yet due,
another engine's or missing and runs nothing; then it runs the receiver
through :func:`signalbox.worker.run_delivery`, the embedded worker's own
path, and records the outcome in the row. Retries are recorded in the row
too (``retryable``, with its backoff) and handed over again by the relay
once due: the broker never schedules anything.

A row whose receiver key this process does not know is left as it is, for a
worker that knows it (the relay hands it over again, and buries it after
``UNKNOWN_RECEIVER_GRACE_SECONDS`` if no process it can see knows the key,
as the embedded worker does), with a warning once per key and process.

While a delivery runs, a thread of this process extends its lease, so a long
receiver keeps its row and a dead process lets it go.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections

from signalbox import _connections, _forks, conf, engines, outbox, registry
from signalbox.registry import Found
from signalbox.worker import Outcome, run_delivery

logger = logging.getLogger("signalbox.engines")


ACK_DELAY = 0.02
"""Seconds a deferred completion (see :func:`deliver`'s ``defer_ack``) waits,
gathering the ones that follow, before the lease keeper's thread writes them
in one statement."""


WRITE_WAIT = 5.0
"""Seconds :func:`write_acks` waits for a write of deferred completions that
another thread has under way (the lease keeper's) before it writes its own."""


def deliver(
    delivery_id: int,
    *,
    engine: str,
    using: str = DEFAULT_DB_ALIAS,
    defer_ack: bool = False,
    task_of: type[engines.Engine] | None = None,
) -> Outcome | None:
    """Run delivery ``delivery_id`` of ``engine`` if it is due; record the outcome.

    Returns the outcome, or None when the row was not there to run (already
    running, finished, not due, another engine's, an unknown receiver key, or
    no such row) or the message may not name it: ``using`` is not one of
    ``OUTBOX_DATABASES``, or (given ``task_of``, the engine class whose task
    calls this with an alias taken from its message) ``engine`` is not an
    alias this process configures as a ``task_of``. Such a message is logged
    as a warning without its values. Never raises for the receiver's errors,
    which are recorded in the row like the embedded worker's.

    ``defer_ack=True`` (for a worker process that runs many tasks, such as
    Celery's) lets a completion that comes in a stream of deliveries be
    written by the lease keeper's thread :data:`ACK_DELAY` later, together
    with the others of that stream: off the task's path, and one statement
    for many. Until then the row stays leased to this process; if the
    process dies first, its lease expires and the delivery runs again, which
    at-least-once allows. Failures, retries and ``atomic=True`` completions
    are always written before this returns. :func:`write_acks` writes what
    waits (at exit, and on Celery's ``worker_process_shutdown``).
    """
    settings = conf.get()
    if not _may_run(delivery_id, engine, using, task_of, settings):
        return None
    receivers, keys = _background()
    defer = defer_ack and _acks.streaming() and _can_defer(using)
    # The claim and the acknowledgement share the receiver's own connection,
    # so unlike the embedded worker's they cannot have a session of their
    # own: each is one statement that relaxes its own commit only (on
    # PostgreSQL, outside a caller's transaction). A database crash may then
    # forget it, and the delivery runs again, which at-least-once allows.
    # SYNCHRONOUS_ACKS keeps them durable.
    durable = settings.synchronous_acks
    try:
        claimed = outbox.claim_one(
            delivery_id,
            engine=engine,
            worker=_name(),
            receivers=keys,
            lease=settings.lease,
            using=using,
            durable=durable,
        )
        if claimed is None:
            _explain_miss(delivery_id, engine, receivers, using)
            return None
        acknowledge: Callable[[outbox.Claimed], bool | None] = (
            functools.partial(_acks.defer, using=using)
            if defer
            else functools.partial(outbox.complete, using=using, durable=durable)
        )
        with keeper.holding(claimed, using):
            return run_delivery(
                claimed, receivers, using=using, acknowledge=acknowledge
            )
    finally:
        _acks.ended()
        _connections.tidy()


def _may_run(
    delivery_id: object,
    engine: object,
    using: object,
    task_of: type[engines.Engine] | None,
    settings: conf.Settings,
) -> bool:
    """Whether a message's id and aliases may name a row here; a warning,
    without the message's values, when not (they may be forged)."""
    if type(delivery_id) is not int:
        why = "names no delivery id"
    elif not isinstance(using, str) or using not in settings.outbox_databases:
        why = "names a database alias not in SIGNALBOX['OUTBOX_DATABASES']"
    elif task_of is not None and not _configured_as(engine, task_of):
        why = f"names an engine alias not configured here as a {task_of.__name__}"
    else:
        return True
    logger.warning("A message for this process's engine task %s; nothing ran.", why)
    return False


def _configured_as(engine: object, task_of: type[engines.Engine]) -> bool:
    if not isinstance(engine, str) or engine not in conf.get().engines:
        return False
    try:
        return isinstance(engines.get(engine), task_of)
    except Exception:  # it cannot be built here: it runs nothing here either
        return False


def _explain_miss(
    delivery_id: int, engine: str, receivers: dict[str, list[Found]], using: str
) -> None:
    """Say why a message found nothing to run, when it is worth a warning."""
    try:
        owner = outbox.due_owner(delivery_id, using=using)
    except Exception as error:  # only an explanation is lost: nothing ran anyway
        logger.debug("Delivery %s: nothing to run (%s).", delivery_id, error)
        return
    if owner is None:  # running, finished, not due or missing: a stale message
        logger.debug("Delivery %s: nothing to run.", delivery_id)
    elif owner[0] != engine:
        logger.warning("A message named another engine's delivery; nothing ran.")
    elif owner[1] not in receivers:
        _unknown_receiver(delivery_id, owner[1])


_warned: dict[str, object] = {}
"""The receiver keys this process has warned about (see _unknown_receiver)."""
os.register_at_fork(after_in_child=_warned.clear)


def _unknown_receiver(delivery_id: int, key: str) -> None:
    # Once per key and process: a stream of its deliveries would flood the log.
    first = object()
    if _warned.setdefault(key, first) is not first:
        return
    logger.warning(
        "Delivery %s is for receiver %s, which this process does not know (it "
        "is not connected here): it is left for a worker that knows it. Later "
        "deliveries of this receiver are left without a word.",
        delivery_id,
        key,
    )


_known: tuple[int, dict[str, list[Found]], list[str]] = (-1, {}, [])


def _background() -> tuple[dict[str, list[Found]], list[str]]:
    """The registry's background receivers and their keys, read again only
    after a receiver was connected or disconnected (a reading walks every
    signal's receivers, and a stream of deliveries would do it for each).
    What it holds stays alive until then, as the embedded worker keeps its
    own reading for the whole of its life."""
    global _known
    changes = registry.registry.changes
    if _known[0] != changes:
        receivers = registry.registry.background()
        _known = (changes, receivers, list(receivers))
    return _known[1], _known[2]


def _can_defer(using: str) -> bool:
    connection = connections[using]
    return connection.vendor == "postgresql" and not connection.in_atomic_block


class _Acks:
    """This process's completions not written yet, by database alias."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._waiting: dict[str, list[outbox.Claimed]] = {}
        self._since = 0.0  # monotonic: when the oldest one was deferred
        self._ended = 0.0  # monotonic: when the last delivery ended
        _forks.renew_in_children(self, _Acks._forget_parent)

    def _forget_parent(self) -> None:
        # The parent's completions are its own to write (its keeper may have
        # been writing them, holding the locks, at the fork).
        self._lock, self._writing = threading.Lock(), threading.Lock()
        self._waiting = {}

    def streaming(self, within: float = ACK_DELAY) -> bool:
        """Whether the last delivery ended less than ``within`` ago: one that
        follows it that closely can expect others to follow, whose
        completions its own can wait for (a lone delivery writes its own)."""
        return time.monotonic() - self._ended < within

    def ended(self) -> None:
        self._ended = time.monotonic()

    def defer(self, claimed: outbox.Claimed, *, using: str) -> None:
        with self._lock:
            if not any(self._waiting.values()):
                self._since = time.monotonic()
            self._waiting.setdefault(using, []).append(claimed)
        keeper.wake()  # a no-op while it looks every ACK_DELAY anyway

    def due_in(self) -> float | None:
        """Seconds until the oldest waiting completion is to be written."""
        with self._lock:
            if not any(self._waiting.values()):
                return None
            return self._since + ACK_DELAY - time.monotonic()

    def write(self) -> None:
        """Write every waiting completion now, on this thread's connection,
        after the write another thread has under way, if any (up to
        :data:`WRITE_WAIT` seconds): a process that ends right after this
        returns ends with every completion it ran written."""
        wrote = self._writing.acquire(timeout=WRITE_WAIT)
        try:
            with self._lock:
                waiting, self._waiting = self._waiting, {}
            for using, claims in waiting.items():
                try:
                    outbox.complete_many(claims, using=using)
                except Exception as error:  # the leases expire; the rows run again
                    logger.warning(
                        "Recording %d completions failed: %s", len(claims), error
                    )
        finally:
            if wrote:
                self._writing.release()


_acks = _Acks()


def write_acks() -> None:
    """Write the completions this process deferred (see ``defer_ack``)."""
    _acks.write()
    _connections.tidy()


atexit.register(write_acks)


def _name() -> str:
    return _name_of(os.getpid(), threading.get_ident())


@functools.lru_cache(maxsize=64)
def _name_of(pid: int, thread: int) -> str:
    return f"{socket.gethostname()}:{pid}:{thread}"


class LeaseKeeper:
    """Extends, every third of a lease, the leases this process holds."""

    def __init__(self) -> None:
        self._held: dict[uuid.UUID, tuple[outbox.Claimed, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._polling = False
        self._pid = -1
        _forks.renew_in_children(self, LeaseKeeper._forget_parent)

    def _forget_parent(self) -> None:
        # A child keeps neither the thread nor its leases; the first delivery
        # it runs starts its own.
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._held, self._pid = {}, -1

    def holding(self, claimed: outbox.Claimed, using: str) -> _Holding:
        """A context in which ``claimed``'s lease is kept alive."""
        return _Holding(self, claimed, using)

    def _add(self, claimed: outbox.Claimed, using: str) -> None:
        with self._lock:
            if self._pid != os.getpid():  # the first in this process
                self._pid = os.getpid()
                threading.Thread(
                    target=self._run, name="signalbox-leases", daemon=True
                ).start()
            self._held[claimed.token] = (claimed, using)

    def _remove(self, claimed: outbox.Claimed) -> None:
        with self._lock:
            self._held.pop(claimed.token, None)

    def wake(self) -> None:
        """Look at the deferred completions soon (one was just added)."""
        if not self._polling:
            self._wake.set()

    def _run(self) -> None:
        beat = time.monotonic()
        while True:
            every = max(conf.get().lease.total_seconds() / 3, 0.05)
            wait = beat + every - time.monotonic()
            # While completions are deferred, look every ACK_DELAY (woken by
            # none of them); once a look finds none, sleep until the beat.
            self._polling = _acks.due_in() is not None or _acks.streaming(1.0)
            self._wake.wait(max(min(wait, ACK_DELAY if self._polling else wait), 0))
            self._wake.clear()
            acks_in = _acks.due_in()
            if acks_in is not None and acks_in <= 0:
                write_acks()
            if time.monotonic() < beat + every:
                continue
            beat = time.monotonic()
            with self._lock:
                held = list(self._held.values())
            for using in {each_using for _, each_using in held}:
                claims = [claimed for claimed, u in held if u == using]
                try:
                    outbox.extend(claims, lease=conf.get().lease, using=using)
                except Exception as error:  # the next beat tries again
                    logger.warning("Extending leases failed: %s", error)
                finally:
                    _connections.tidy()
            if not held and _acks.due_in() is None:
                connections.close_all()  # nothing to keep alive: no connection


class _Holding:
    def __init__(self, keeper: LeaseKeeper, claimed: outbox.Claimed, using: str):
        self.keeper, self.claimed, self.using = keeper, claimed, using

    def __enter__(self) -> None:
        self.keeper._add(self.claimed, self.using)

    def __exit__(self, *exc: object) -> None:
        self.keeper._remove(self.claimed)


keeper = LeaseKeeper()
"""This process's lease keeper."""
