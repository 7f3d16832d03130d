"""A thread pool in the sending process: ``signalbox.engines.threads.ThreadEngine``.

For small deployments that run one web process and no worker: each committed
delivery runs on one of ``OPTIONS["threads"]`` threads (4 by default) of the
process that sent it, after the commit. The rows are still in the outbox, so
what a process was running when it died (a deploy, a crash) is picked up by
``manage.py signalbox relay`` — which runs it in its own threads — and retries
are handed over by the relay once due. Without a relay running, a process's
crash leaves its unfinished deliveries waiting in the outbox: visible in
``signalbox status``, not lost. See docs/engines/threads.md for when this is
enough and when it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections

from signalbox import outbox
from signalbox.engines import Engine
from signalbox.engines.remote import deliver

logger = logging.getLogger("signalbox.engines")


class ThreadEngine(Engine):
    """Runs deliveries on a pool of threads in the sending process."""

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.check_options({"threads": int}, "{'threads': N} only")
        threads = options.get("threads", 4)
        if threads < 1:
            raise self.option_error("threads", "it needs at least 1 thread")
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix=f"signalbox-{alias}"
        )

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Queue each delivery on the pool; returns at once."""
        for each in handovers:
            self._pool.submit(self._run, each)

    def worker_hint(self, queues: Sequence[str]) -> str:
        """The sending process runs them, and the relay what it left."""
        return "the sending process's threads (`signalbox relay` runs what it left)"

    def _run(self, handover: outbox.Handover) -> None:
        try:
            deliver(handover.id, engine=self.alias, using=handover.using)
        except Exception:  # recording failed; the lease brings the row back
            logger.exception("Delivery %s could not be run.", handover.id)
        finally:
            # These threads live in a web process: its CONN_MAX_AGE applies.
            close_old_connections()

    def close(self) -> None:
        """Finish what runs, then stop the threads."""
        self._pool.shutdown(wait=True)
