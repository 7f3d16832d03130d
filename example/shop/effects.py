"""What the receivers did, and when: a stand-in for mail servers, caches and sockets.

The example has no SMTP server, cache cluster or websocket, so each receiver
records the effect it would have had here, with the moment it happened and the
thread it happened in. The demo reads these records to tell when the e-mail
went out relative to the commit and the response.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Effect:
    """One thing a receiver did for one order."""

    what: str
    order: str
    at: float
    """``time.perf_counter()`` when it happened."""
    thread: int
    """``threading.get_ident()`` of the thread it happened in."""
    on_event_loop: bool
    """Whether that thread was running an event loop at the time."""


_lock = threading.Lock()
_effects: list[Effect] = []


def record(what: str, order: str) -> None:
    """Record that ``what`` happened for the order numbered ``order``, now."""
    effect = Effect(
        what=what,
        order=order,
        at=time.perf_counter(),
        thread=threading.get_ident(),
        on_event_loop=_event_loop_running(),
    )
    with _lock:
        _effects.append(effect)


def find(what: str, order: str) -> Effect | None:
    """The first ``what`` recorded for ``order``, or None if it has not happened."""
    with _lock:
        return next((e for e in _effects if e.what == what and e.order == order), None)


def clear() -> None:
    """Forget everything recorded so far."""
    with _lock:
        _effects.clear()


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
