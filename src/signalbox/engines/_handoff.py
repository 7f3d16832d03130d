"""Handing committed deliveries to their engines, on a thread of the sender's process.

A commit's ``on_commit`` hook only appends to this process's queue, so a send
never waits for a broker, and a broker that is down can neither raise into
the request nor hang it. The thread publishes what has gathered, engine by
engine, at once; it marks the rows handed over later, in one statement for
everything published in the last :data:`MARK_DELAY` seconds (a web process's
hand-over thread competes with its requests for the GIL, and a mark per
commit, with a database connection opened for it, cost more than the
publish). The mark only keeps the relay from handing a row over again once
it is ``HANDOVER_GRACE_SECONDS`` old, so it is made well within that; most
rows have run by then, and the statement finds nothing left to mark. A
failed publish is logged and dropped: the rows stay in the outbox, and the
relay hands them over later. The thread is started on first use in each
process (a worker forked after that starts its own).

The adapter of a background receiver asks this module for its commit hook
(:func:`after_commit`); the engines package never imports it back.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from django.db import connections, transaction
from django.utils.translation import ngettext

from signalbox import _forks, _outage, conf, engines, outbox

logger = logging.getLogger("signalbox.engines")

MARK_DELAY = 1.0
"""Seconds the hand-over thread gathers published rows before marking them
(less when ``HANDOVER_GRACE_SECONDS`` is short: a quarter of it)."""

GATHER_DELAY = 0.005
"""Seconds the thread gathers commits before publishing again when it
published less than that ago: a process that commits in a stream hands over
in batches (one round trip each, where the engine batches) and its requests
compete with fewer publishes; a lone commit is published at once."""

_MOST_UNMARKED = 1000
_MOST_GATHERED = 100


def publish(
    handovers: Sequence[outbox.Handover], *, mark: bool = True
) -> list[outbox.Handover]:
    """Give ``handovers`` to their engines and mark the ones taken; return those.

    An engine that fails is logged, and its rows are left for the relay. Used
    by the hand-over thread (which marks later, ``mark=False``) and by the
    relay.
    """
    by_engine: dict[str, list[outbox.Handover]] = defaultdict(list)
    for each in handovers:
        by_engine[each.engine].append(each)
    taken: list[outbox.Handover] = []
    for alias, group in by_engine.items():
        try:
            engines.get(alias).publish(group)
        except Exception as error:  # the rows stay; the relay hands them over
            logger.warning(
                ngettext(
                    "Engine %r did not take %d delivery (%s: %s); it stays in "
                    "the outbox for `signalbox relay`.",
                    "Engine %r did not take %d deliveries (%s: %s); they stay in "
                    "the outbox for `signalbox relay`.",
                    len(group),
                ),
                alias,
                len(group),
                type(error).__name__,
                error,
            )
            continue
        taken += group
    if mark:
        _mark(taken)
    return taken


def _mark(taken: Sequence[outbox.Handover]) -> None:
    by_database: dict[str, list[outbox.Handover]] = defaultdict(list)
    for each in taken:
        by_database[each.using].append(each)
    for using, group in by_database.items():
        _say_if_unlisted(using)
        try:
            outbox.mark_handed_over(group, using=using)
        except Exception as error:  # unmarked rows are handed over again, harmlessly
            if not _outage.lost(
                error, using=using, affected="hand-over marks", log=logger
            ):
                logger.warning(
                    ngettext(
                        "Could not mark %d delivery handed over: %s",
                        "Could not mark %d deliveries handed over: %s",
                        len(group),
                    ),
                    len(group),
                    error,
                )
            connections[using].close()
        else:
            _outage.back(using)


_unlisted: set[str] = set()


def _say_if_unlisted(using: str) -> None:
    """Warn, once per alias and process, that rows of a database the engines'
    tasks refuse (it is not in ``OUTBOX_DATABASES``) were handed over."""
    if using in conf.get().outbox_databases or using in _unlisted:
        return
    _unlisted.add(using)
    logger.warning(
        "Deliveries on database %r were handed to their engines, but "
        "SIGNALBOX['OUTBOX_DATABASES'] does not list %r: engines' tasks run "
        "none of them. List it in the settings of the processes that run them.",
        using,
        using,
    )


class Publisher:
    """This process's hand-over thread and the queue that feeds it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: list[outbox.Handover] = []
        self._unmarked: list[outbox.Handover] = []
        self._mark_at = 0.0  # monotonic; when the first unmarked row is due
        self._flushing = 0
        self._busy = False
        self._published_at = 0.0  # monotonic
        self._pid = -1
        _forks.renew_in_children(self, Publisher._forget_parent)

    def _forget_parent(self) -> None:
        # A child inherits the queue but not the thread, and the lock in
        # whatever state the thread left it: start afresh on the first submit.
        self._changed = threading.Condition()
        self._pending, self._unmarked, self._busy = [], [], False
        self._flushing, self._pid = 0, -1

    def submit(self, handovers: Sequence[outbox.Handover]) -> None:
        """Queue ``handovers``; returns at once."""
        with self._changed:
            if self._pid != os.getpid():
                self._start()
            self._pending.extend(handovers)
            self._changed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was handed over (or dropped)
        and marked."""
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(self._idle, timeout)
            finally:
                self._flushing -= 1

    def _idle(self) -> bool:
        return not (self._pending or self._unmarked or self._busy)

    def _start(self) -> None:
        self._pid = os.getpid()
        threading.Thread(
            target=self._run, name="signalbox-handoff", daemon=True
        ).start()

    def _mark_due(self) -> bool:
        return bool(self._unmarked) and (
            self._flushing > 0
            or len(self._unmarked) >= _MOST_UNMARKED
            or time.monotonic() >= self._mark_at
        )

    def _run(self) -> None:
        while True:
            with self._changed:
                while not (self._pending or self._mark_due()):
                    wait = self._mark_at - time.monotonic() if self._unmarked else None
                    self._changed.wait(wait)
                gather_until = self._published_at + GATHER_DELAY
                while (
                    self._pending
                    and not self._flushing
                    and len(self._pending) < _MOST_GATHERED
                    and time.monotonic() < gather_until
                ):
                    self._changed.wait(gather_until - time.monotonic())
                batch, self._pending, self._busy = self._pending, [], True
                marks = self._unmarked if self._mark_due() else []
                if marks:
                    self._unmarked = []
            try:
                if batch:
                    self._published_at = time.monotonic()
                    self._published(publish(batch, mark=False))
                if marks:
                    _mark(marks)
            except Exception:  # never let the thread die; the relay has the rows
                logger.exception(
                    ngettext(
                        "Handing over %d delivery failed.",
                        "Handing over %d deliveries failed.",
                        len(batch),
                    ),
                    len(batch),
                )
            finally:
                if marks:
                    # Marked once a second at most, from a web process: no
                    # connection is kept between marks.
                    connections.close_all()
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _published(self, taken: list[outbox.Handover]) -> None:
        if not taken:
            return
        with self._changed:
            if not self._unmarked:
                delay = min(MARK_DELAY, conf.get().handover_grace.total_seconds() / 4)
                self._mark_at = time.monotonic() + delay
            self._unmarked += taken


publisher = Publisher()
"""The one hand-over thread of this process."""


def after_commit(
    rows: Sequence[outbox.NewDelivery], using: str
) -> Callable[[list[int]], None]:
    """What :func:`signalbox.outbox.enqueue` calls with the new rows' ids: it
    arranges for them to be handed to their engines once the transaction
    commits (never after a rollback), on the hand-over thread, so the
    sender never waits for a broker. Delayed rows are left to the relay,
    which hands them over once due: on PostgreSQL they wake it (at the
    commit) to sleep until then."""
    return functools.partial(_hand_over_on_commit, rows, using)


def _hand_over_on_commit(
    rows: Sequence[outbox.NewDelivery], using: str, ids: list[int]
) -> None:
    # A delayed row is not due yet: its message would run nothing. The relay
    # hands it over once due; a sleeping relay learns of it here.
    handovers = [
        outbox.Handover(pk, row.engine, row.queue, row.priority, using)
        for pk, row in zip(ids, rows, strict=True)
        if not row.delay
    ]
    if len(handovers) < len(rows):
        outbox.wake_relay({row.engine for row in rows if row.delay}, using=using)
    if not handovers:
        return
    transaction.on_commit(
        functools.partial(publisher.submit, handovers), using=using, robust=True
    )


def flush(timeout: float = 5.0) -> bool:
    """Wait until this process has handed over what its commits gave it.

    For tests and for a clean exit; False if ``timeout`` passed first.
    """
    return publisher.flush(timeout)


@atexit.register
def _flush_at_exit() -> None:
    # A process that exits right after a commit (a script, a test run) gets
    # two seconds to hand over; whatever is left, the relay hands over.
    if publisher._pid == os.getpid():
        publisher.flush(2.0)
