"""The body of every engine's task: check what a message names, then run it.

An engine's message carries only a delivery id (and the engine's and the
database's aliases). Neither alias is taken on trust: the engine must be one
this process configures for the task's own engine class, and the database
one of ``OUTBOX_DATABASES``, or the message runs nothing. :func:`deliver`
then hands the id to the runtime (:func:`signalbox.worker.run_task`), which
claims the row under a lease, runs the receiver through the embedded
worker's own path, keeps the lease alive meanwhile and records the outcome
in the row. Retries are recorded in the row too (``retryable``, with its
backoff) and handed over again by the relay once due: the broker never
schedules anything. When the database cannot be reached, a task runs nothing
and returns (the outage is logged once per process: see
:mod:`signalbox._outage`), and the relay hands the row over again.
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS

from signalbox import conf, engines, worker
from signalbox.worker import Outcome, write_acks

__all__ = ["deliver", "write_acks"]

logger = logging.getLogger("signalbox.engines")


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
    which are recorded in the row like the embedded worker's, nor for a lost
    database connection (None; the outage is logged once, and the relay
    hands the row over again); raises any other database error.

    ``defer_ack=True`` (for a worker process that runs many tasks, such as
    Celery's) lets a completion that comes in a stream of deliveries be
    written a moment later (``ACK_DELAY`` of :mod:`signalbox.worker._keeper`),
    together with the others of that stream: off the task's path, and one
    statement for many. Until then the row stays leased to this process; if
    the process dies first, its lease expires and the delivery runs again,
    which at-least-once allows. Failures, retries and ``atomic=True`` completions
    are always written before this returns. :func:`write_acks` writes what
    waits (at exit, and on Celery's ``worker_process_shutdown``).
    """
    if not _may_run(delivery_id, engine, using, task_of, conf.get()):
        return None
    return worker.run_task(delivery_id, engine=engine, using=using, defer_ack=defer_ack)


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
