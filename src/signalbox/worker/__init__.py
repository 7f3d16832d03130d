"""The runtime: running claimed deliveries, once for everyone.

The embedded worker (``manage.py signalbox worker``) and every engine's task
(:func:`signalbox.engines.remote.deliver`) run a delivery through the same
parts, each in one module here:

=====================  =======================================================
``_run``               running one claimed delivery and recording its outcome
``_embedded``          the embedded worker's loop: claims, its pool, counting
``_pace``              how much the worker claims at once, from its pace
``_heartbeat``         the worker's heartbeat: leases, record, rescue, burial
``_housekeeping``      rescue of expired leases and dead workers' rows, and
                       burying unknown keys (the worker's and the relay's)
``_leases``            the leases held, and how they are extended
``_acks``              acknowledgements in batches (worker and engine tasks)
``_tasks``             an engine task's run: claim one row, run it, record it
``_keeper``            what engine tasks leave running: their leases, their
                       deferred acknowledgements (one thread per database)
``_names``             how lease holders are named
``_commits``           the worker's bookkeeping commits, not waiting for disk
``_listen``            waking on PostgreSQL's ``NOTIFY``
``_in_transaction``    the worker inside its caller's transaction (tests)
``_describe``          the lines a worker starts with
``_stopping``          SIGTERM, the drain and giving back
=====================  =======================================================

Imports go one way: the runtime uses the outbox and the registry, and never
:mod:`signalbox.engines`; what it needs to know of the engines (the aliases
a worker serves, how to start another engine's workers) its caller passes in.
"""

from __future__ import annotations

from signalbox.worker._embedded import (
    DEFAULT_CONCURRENCY,
    Counts,
    Worker,
    embedded_aliases,
)
from signalbox.worker._housekeeping import bury_unknown, rescue_expired
from signalbox.worker._keeper import write_acks
from signalbox.worker._listen import Listener
from signalbox.worker._names import process_name
from signalbox.worker._run import Outcome, run_delivery
from signalbox.worker._stopping import install_signal_handlers
from signalbox.worker._tasks import run_task

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Counts",
    "Listener",
    "Outcome",
    "Worker",
    "bury_unknown",
    "embedded_aliases",
    "install_signal_handlers",
    "process_name",
    "rescue_expired",
    "run_delivery",
    "run_task",
    "write_acks",
]
