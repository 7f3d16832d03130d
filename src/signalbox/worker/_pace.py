"""How much the embedded worker claims at once, and how it hands it to its
pool, from how long its deliveries take."""

from __future__ import annotations

from signalbox import outbox

FAST_NS = 10_000_000
"""Deliveries that take less than this (on average) are claimed ahead."""

AHEAD_NS = 20_000_000
"""How long, at most, a row claimed ahead should wait for a free thread."""

MOST_AHEAD = 200
"""The most rows claimed ahead of the pool: a claim then takes about half."""

HAND_OFF_NS = 1_000_000
"""About how much work one hand-over to a pool thread carries (see chunks)."""


class Pace:
    """A moving average of how long a delivery takes on a pool of
    ``concurrency`` threads (unknown at first: taken as slow), and what it
    implies. Not thread-safe: the worker calls :meth:`note` under its lock."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.ns = FAST_NS

    def note(self, took_ns: int) -> None:
        """Count a delivery that took ``took_ns`` into the average."""
        self.ns += (took_ns - self.ns) // 8

    def capacity(self) -> int:
        """How many deliveries may be claimed and not yet finished.

        The pool's size, and more while deliveries finish within
        :data:`FAST_NS`: as many as the pool runs in :data:`AHEAD_NS` at the
        pace seen so far (at least its size again, at most
        :data:`MOST_AHEAD`). A claim costs a round trip and a statement
        whatever it takes, so fast receivers are fed by few large claims,
        and the rows claimed ahead wait only moments. Slow receivers get no
        rows claimed ahead, so an idle worker elsewhere takes them instead.
        """
        if self.ns >= FAST_NS:
            return self.concurrency
        ahead = self.concurrency * AHEAD_NS // max(self.ns, 1)
        return self.concurrency + min(max(ahead, self.concurrency), MOST_AHEAD)

    def worth_claiming(self, unfinished: int) -> bool:
        """Whether, with ``unfinished`` deliveries claimed, a claim is worth
        its round trip: half of the capacity is free."""
        capacity = self.capacity()
        return (capacity - unfinished) * 2 >= capacity

    def chunks(self, claimed: list[outbox.Claimed]) -> list[list[outbox.Claimed]]:
        """``claimed`` cut into the pieces one pool thread takes at a time.

        One row each, unless deliveries finish in well under a millisecond:
        then each piece carries about :data:`HAND_OFF_NS` of work (and no
        more than an even share of the claim). A hand-over wakes a thread,
        which then fights the others for the GIL: for a fast receiver that
        cost more than the delivery, and more the more threads the pool has.
        """
        share = -(-len(claimed) // self.concurrency)  # rounded up
        size = max(min(HAND_OFF_NS // max(self.ns, 1), share), 1)
        return [claimed[n : n + size] for n in range(0, len(claimed), size)]
