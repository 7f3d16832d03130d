"""The few places where Django 5.2 and 6.x dispatch differently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from django.dispatch import Signal, dispatcher

# Django 6.0 runs a send's coroutine receivers in a TaskGroup that shares and
# then restores the caller's context; 5.2 gathers them. Each version's own
# helper keeps signalbox's send indistinguishable from Django's.
_django_run_parallel = getattr(dispatcher, "_run_parallel", None)


async def run_parallel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await ``awaitables`` concurrently, the way this Django version's send does."""
    if _django_run_parallel is not None:
        return list(await _django_run_parallel(*awaitables))
    return list(await asyncio.gather(*awaitables))


NO_RECEIVERS: object = dispatcher.NO_RECEIVERS
"""Django's marker, in ``sender_receivers_cache``, for a sender with no receivers."""

SYNC_BEFORE_ASYNC: bool = _django_run_parallel is not None
"""Django 6.0 awaits a send's sync receivers before starting its coroutine ones;
5.2 runs the two groups concurrently."""

make_id: Callable[[object], Hashable] = dispatcher._make_id  # type: ignore[attr-defined]
"""Django's identity for a receiver or sender in a connection's lookup key."""


def log_robust_failure(signal: Signal, receiver: object, error: Exception) -> None:
    """Log a receiver's error the way ``send_robust()`` does in this Django."""
    signal._log_robust_failure(receiver, error)  # type: ignore[attr-defined]
