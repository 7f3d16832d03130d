"""The embedded worker run inside its caller's open transaction (a
``django.test.TestCase``, say): one delivery at a time, on the caller's
thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction

from signalbox import outbox
from signalbox.worker._describe import count_receivers
from signalbox.worker._run import Call, call_receiver, run_delivery

if TYPE_CHECKING:
    from signalbox.worker._embedded import Counts, Worker

logger = logging.getLogger("signalbox.worker")


def run_in_transaction(worker: Worker) -> Counts:
    """Run ``worker``'s deliveries one at a time on this thread, in its open
    transaction, until it is stopped or (burst mode, ``max_deliveries``)
    done; returns its counts.

    The rows that transaction wrote (and the claims it makes) are seen by
    its own connection only: the worker's threads, each on a connection
    of its own, would find no row to acknowledge (PostgreSQL), or wait
    for the caller's write lock forever (SQLite). So everything happens
    here, on the caller's connection: each claim, each run, each outcome
    under the claim's lease token as always, and each receiver in a
    savepoint, so a receiver's database error cannot break the caller's
    transaction. No heartbeat is needed: no other worker can claim what
    this uncommitted transaction holds. Errors reach the caller, whose
    transaction they concern.
    """
    logger.info(
        "Worker %s runs %s on queues %s in the caller's transaction, one at a time.",
        worker.name,
        count_receivers(len(worker.receivers)),
        ",".join(worker.queues),
    )
    in_savepoint = _in_savepoint(worker.using)
    worker.rescue()
    while not worker.stopping.is_set():
        claimed = outbox.claim(
            worker=worker.name,
            queues=worker.queues,
            receivers=list(worker.receivers),
            limit=max(worker.free(worker.concurrency), 0),
            lease=worker.settings.lease,
            using=worker.using,
            engines=worker.engines,
        )
        for each in claimed:
            outcome = run_delivery(
                each, worker.receivers, using=worker.using, call=in_savepoint
            )
            worker.count(outcome, 1)
        if _finished(worker):
            break
        if not claimed:
            worker.wake.wait(worker.settings.poll.total_seconds())
    logger.info(
        "Worker %s stopped after %d deliveries.", worker.name, worker.counts.total
    )
    return worker.counts


def _finished(worker: Worker) -> bool:
    most = worker.max_deliveries
    if most is not None and worker.counts.total >= most:
        return True
    return worker.burst and not outbox.due_for(
        worker.queues,
        list(worker.receivers),
        using=worker.using,
        engines=worker.engines,
    )


def _in_savepoint(using: str) -> Call:
    """A ``call`` for :func:`run_delivery` that runs each receiver in a
    savepoint of ``using``'s open transaction."""

    def call(
        receiver: Callable[..., Any], kwargs: dict[str, Any], timeout: timedelta | None
    ) -> Any:
        with transaction.atomic(using=using):
            return call_receiver(receiver, kwargs, timeout)

    return call
