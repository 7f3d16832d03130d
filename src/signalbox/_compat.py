"""The few places where Django 5.2 and 6.x dispatch differently."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Hashable
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


_restore_context = getattr(dispatcher, "_restore_context", None)


async def await_alone(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Await one coroutine receiver in a task of its own, as this Django would.

    Django 6 shares a copy of the caller's context with the task and copies
    its changes back afterwards; 5.2 gives the task its own copy. Either way
    the receiver sees ``asyncio.current_task()`` as a new task.
    """
    loop = asyncio.get_running_loop()
    if _restore_context is None:
        return await loop.create_task(coroutine)
    context = contextvars.copy_context()
    try:
        return await loop.create_task(coroutine, context=context)
    finally:
        _restore_context(context)


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
