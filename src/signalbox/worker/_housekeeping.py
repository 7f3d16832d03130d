"""Taking back what other processes held, and burying rows nobody can run:
the chores the embedded worker's heartbeat and the relay share.

Each takes the logger of its caller, so that a line says who did it
(``signalbox.worker`` or ``signalbox.engines``), and returns how many rows it
changed, which the caller uses to wake its loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from django.utils.translation import ngettext

from signalbox import _outage, conf, outbox


def rescue_expired(*, using: str, log: logging.Logger) -> int:
    """Take back the rows whose lease expired (``outbox.rescue``), say how many
    on ``log`` when there were any, and return that count.

    Not within a lease of an outage of ``using`` ending (in this process):
    every lease ran out while the database was away, and the workers that
    hold them, alive, renew them within a third of a lease of being back.
    Taking those rows back at once ran them twice. A dead worker's rows wait
    one lease longer (on PostgreSQL its free liveness lock says sooner)."""
    if _outage.since_back(using) < conf.get().lease.total_seconds():
        # Counted, not taken: this reaches the database, which is how an
        # outage seen here ends.
        log.debug(
            "Leaving %d expired leases to their holders for a lease after an "
            "outage of database %r.",
            outbox.expired(using=using),
            using,
        )
        return 0
    rescued = outbox.rescue(using=using)
    if rescued:
        log.warning(
            ngettext(
                "Took back %d delivery whose lease expired.",
                "Took back %d deliveries whose lease expired.",
                rescued,
            ),
            rescued,
        )
    return rescued


def rescue_gone(*, using: str, itself: str, log: logging.Logger) -> int:
    """Take back the rows of workers whose process is gone (their liveness
    lock is free: PostgreSQL only), never those of ``itself``; say how many
    on ``log`` when there were any, and return that count."""
    rescued = outbox.rescue_gone(using=using, itself=itself)
    if rescued:
        log.warning(
            ngettext(
                "Took back %d delivery from a worker whose process is gone.",
                "Took back %d deliveries from a worker whose process is gone.",
                rescued,
            ),
            rescued,
        )
    return rescued


def bury_unknown(
    *,
    using: str,
    known_here: Iterable[str],
    engines: Sequence[str],
    log: logging.Logger,
    who: str,
) -> int:
    """Mark dead the rows of ``engines`` whose receiver key neither this
    process (``known_here``) nor any process seen lately knows, once they
    waited ``UNKNOWN_RECEIVER_GRACE_SECONDS``; say how many on ``log`` as an
    error (``who``: "worker" or "process", the kind of caller that did not
    know it), and return that count."""
    settings = conf.get()
    known = outbox.known_receivers(stale_after=settings.lease * 2, using=using)
    buried = outbox.bury_unknown(
        known=known | set(known_here),
        grace=settings.unknown_receiver_grace,
        using=using,
        engines=engines,
    )
    if buried:
        log.error(
            ngettext(
                "%(count)d delivery names a receiver no %(who)s knows; marked dead.",
                "%(count)d deliveries name receivers no %(who)s knows; marked dead.",
                buried,
            ),
            {"count": buried, "who": who},
        )
    return buried
