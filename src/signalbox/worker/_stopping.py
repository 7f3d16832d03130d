"""Stopping the embedded worker: SIGTERM and SIGINT, the drain within the
grace period, and giving back what was not run."""

from __future__ import annotations

import _thread
import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING

from django.utils.translation import ngettext

from signalbox import _outage, outbox

if TYPE_CHECKING:
    from signalbox.worker._embedded import Worker

logger = logging.getLogger("signalbox.worker")


def shut_down(worker: Worker, threads: list[threading.Thread]) -> None:
    """Stop ``worker`` claiming, give back the rows it has not started, let
    the running ones finish within ``SHUTDOWN_GRACE_SECONDS``, give back the
    rest (as interrupted), end its threads and remove its record."""
    worker.stopping.set()  # also when run() ends on its own (burst, max)
    _give_back(worker, _unstarted(worker), "not started")
    deadline = time.monotonic() + worker.settings.shutdown_grace.total_seconds()
    while worker.unfinished and time.monotonic() < deadline:
        worker.wake.wait(0.05)
        worker.wake.clear()
    running = worker.end_acknowledging()
    _give_back(
        worker, running, "still running after the grace period", interrupted=True
    )
    loop = worker.end_threads()
    # Joined, so that run() returns with every connection it opened
    # closed. A receiver still running past the grace period is left to
    # finish on its daemon thread (its row was given back): its thread is
    # not waited for, or the exit would come later than the grace says.
    deadline = time.monotonic() + 5
    for thread in threads:
        budget = max(deadline - time.monotonic(), 0)
        if running and thread.name.startswith("signalbox-run"):
            budget = min(budget, 0.1)
        thread.join(timeout=budget)
    if not loop.is_running():
        loop.close()
    worker.guarded(lambda: outbox.forget_worker(worker.name, using=worker.using))
    # Last: until its record is gone, a free lock would say it had died.
    worker.liveness.close()
    worker.commits.restore()
    logger.info(
        ngettext(
            "Worker %s stopped after %d delivery.",
            "Worker %s stopped after %d deliveries.",
            worker.counts.total,
        ),
        worker.name,
        worker.counts.total,
    )


def _unstarted(worker: Worker) -> list[outbox.Claimed]:
    """Take back from the pool's queue what no thread has started."""
    unstarted: list[outbox.Claimed] = []
    while True:
        try:
            claimed = worker.work.get_nowait()
        except queue.Empty:
            worker.forget_unfinished(len(unstarted))
            return unstarted
        if claimed is not None:
            unstarted += claimed


def _give_back(
    worker: Worker,
    claimed: list[outbox.Claimed],
    why: str,
    *,
    interrupted: bool = False,
) -> None:
    if not claimed:
        return
    try:
        released = outbox.release(claimed, using=worker.using, interrupted=interrupted)
    except Exception as error:  # the leases will expire and bring them back
        if _outage.lost(error, using=worker.using, affected="giving back", log=logger):
            return
        logger.exception(
            ngettext(
                "Could not give back %d delivery.",
                "Could not give back %d deliveries.",
                len(claimed),
            ),
            len(claimed),
        )
        return
    for each in claimed:
        worker.leases.let_go(each)
    logger.warning(
        ngettext(
            "Gave back %d delivery (%s).", "Gave back %d deliveries (%s).", released
        ),
        released,
        why,
    )


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: stop gracefully. Second: exit at once."""

    def handle(signum: int, frame: object) -> None:
        if worker.stopping.is_set():
            os._exit(1)
        # A handler runs between two bytecodes of the main thread, which may
        # be holding the very lock that Event.set() (and logging) take, say
        # on its way out of _wake.wait(): taking it here would deadlock the
        # worker for good. A thread of its own takes it once the main thread
        # lets go (_thread's start takes no lock the main thread may hold).
        _thread.start_new_thread(_stop, (worker, signum))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _stop(worker: Worker, signum: int) -> None:
    logger.info(
        "Received %s; finishing running deliveries.", signal.Signals(signum).name
    )
    worker.stop()
