"""Keeping leases alive while their deliveries run.

:class:`Leases` is the set of claims held and the one way they are
extended: the embedded worker's heartbeat extends its own, and the keeper of
a process's engine tasks (:mod:`signalbox.worker._keeper`) extends theirs,
every third of a lease. A dead process extends nothing: its leases expire
and its rows run again.
"""

from __future__ import annotations

import threading
import uuid

from signalbox import conf, outbox


class Leases:
    """The claims held (each with its database alias), to be extended until
    let go. Safe to use from many threads."""

    def __init__(self) -> None:
        # By id and token: one claim statement gives all its rows one token,
        # and two databases may each have a row of the same id.
        self._held: dict[tuple[int, uuid.UUID], tuple[outbox.Claimed, str]] = {}
        self._lock = threading.Lock()

    def hold(self, claimed: outbox.Claimed, using: str) -> None:
        """Keep ``claimed``'s lease alive from now on."""
        with self._lock:
            self._held[claimed.id, claimed.token] = (claimed, using)

    def hold_all(self, claims: list[outbox.Claimed], using: str) -> None:
        """Keep the leases of ``claims`` alive from now on."""
        with self._lock:
            for claimed in claims:
                self._held[claimed.id, claimed.token] = (claimed, using)

    def let_go(self, claimed: outbox.Claimed) -> bool:
        """Stop keeping ``claimed``'s lease; whether it was held."""
        with self._lock:
            return self._held.pop((claimed.id, claimed.token), None) is not None

    def claims(self) -> list[outbox.Claimed]:
        """The claims held now, in the order they were taken."""
        with self._lock:
            return [claimed for claimed, _ in self._held.values()]

    def __len__(self) -> int:
        return len(self._held)

    def holds(self, using: str) -> bool:
        """Whether a claim on database ``using`` is held."""
        with self._lock:
            return any(each == using for _, each in self._held.values())

    def extend(self, using: str | None = None) -> None:
        """Push every held lease (on database ``using``, or on all) out to
        now + ``LEASE_SECONDS``, one statement per database. Raises what the
        database raised (after trying every database), for the caller to
        log: the next beat tries again."""
        with self._lock:
            held = list(self._held.values())
        by_database: dict[str, list[outbox.Claimed]] = {}
        for claimed, each in held:
            if using is None or each == using:
                by_database.setdefault(each, []).append(claimed)
        failed: Exception | None = None
        for using, claims in by_database.items():
            try:
                outbox.extend(claims, lease=conf.get().lease, using=using)
            except Exception as error:  # the other databases still get theirs
                failed = error
        if failed is not None:
            raise failed

    def forget_parent(self) -> None:
        """In a forked child: hold none of the parent's rows (and never wait
        for the parent's threads, which may have held the lock at the fork)."""
        self._lock, self._held = threading.Lock(), {}
