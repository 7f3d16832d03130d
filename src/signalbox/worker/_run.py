"""Running one claimed delivery: the one path every engine shares.

``run_delivery`` finds the receiver in the registry by key (never by
importing anything the row names), decodes the arguments, calls the receiver
as an inline receiver would be called, and records the outcome on the row
under the claim's lease token. A token that no longer matches means the
lease was taken over while the receiver ran; the outcome is then dropped,
and for an ``atomic=True`` receiver its effects are rolled back with it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.db import transaction

from signalbox import _outage, codec, observe, outbox
from signalbox._context import DeliveryContext, _current
from signalbox.exceptions import DecodeError, Retry
from signalbox.policy import Policy
from signalbox.registry import Found

logger = logging.getLogger("signalbox.worker")


class Outcome(enum.Enum):
    """What became of one run of a delivery."""

    COMPLETED = "completed"
    RETRYING = "retrying"
    DEAD = "dead"
    LEASE_LOST = "lease_lost"


Call = Callable[[Callable[..., Any], dict[str, Any], "timedelta | None"], Any]
"""Runs a receiver with its keyword arguments within an optional timeout."""


class LeaseLost(Exception):
    """The claim no longer holds the row: another worker took it over."""


Acknowledge = Callable[[outbox.Claimed], "bool | None"]
"""Records that a delivery completed: returns whether it applied (the lease
still held), or None when it is recorded later (the worker batches them)."""


def run_delivery(
    claimed: outbox.Claimed,
    receivers: dict[str, list[Found]],
    *,
    using: str,
    call: Call | None = None,
    acknowledge: Acknowledge | None = None,
) -> Outcome:
    """Run ``claimed`` and record the result; never raises for the receiver's errors.

    ``receivers`` is the registry's :meth:`~signalbox.registry.Registry.background`
    map. ``call`` runs the receiver with its keyword arguments (the worker
    passes one that runs coroutines on its event loop); by default coroutine
    receivers go through ``async_to_sync``. ``acknowledge``, when given, is
    handed each successful run of a receiver that is not ``atomic=True``
    instead of marking it completed here; if it says it will record it later
    (None), the outcome is ``COMPLETED`` before the row says so. Failures,
    retries and atomic completions are always recorded before this returns.
    """
    found = _find(claimed, receivers)
    if found is None:
        return _bury(
            claimed,
            "unknown_receiver",
            "No receiver with this key is connected in this process.",
            using,
        )
    try:
        kwargs = _arguments(claimed.payload)
    except DecodeError as error:
        return _bury(claimed, "decode_error", _describe(error), using)
    kwargs["signal"] = found.signal
    policy = found.info.policy or Policy()
    token = _current.set(
        DeliveryContext(
            claimed.id, claimed.attempt, claimed.enqueued_at, claimed.interrupted
        )
    )
    try:
        return _attempt(
            claimed, found, kwargs, policy, call or call_receiver, using, acknowledge
        )
    finally:
        _current.reset(token)


def _arguments(payload: Any) -> dict[str, Any]:
    """The keyword arguments ``payload`` holds, sender included.

    Raises :class:`DecodeError` for anything else, naming what was wrong but
    never what the payload holds: the codec turns whatever goes wrong while
    decoding (a field refusing a snapshot's value, say) into one.
    """
    if isinstance(payload, outbox.Unreadable):
        raise DecodeError(f"The payload is not readable JSON: {payload.error}")
    if type(payload) is not dict or not {"kwargs", "sender"} <= payload.keys():
        raise DecodeError("The payload is not an object with 'kwargs' and 'sender'.")
    kwargs = codec.decode(payload["kwargs"])
    kwargs["sender"] = codec.decode_sender(payload["sender"])
    return kwargs


def _find(claimed: outbox.Claimed, receivers: dict[str, list[Found]]) -> Found | None:
    candidates = receivers.get(claimed.receiver, [])
    for found in candidates:
        if observe.signal_label(found.signal) == claimed.signal:
            return found
    # The same key on a differently named signal is the same function; the
    # name only tells which signal to pass, and this one is as good as any.
    return candidates[0] if len(candidates) == 1 else None


def _attempt(
    claimed: outbox.Claimed,
    found: Found,
    kwargs: dict[str, Any],
    policy: Policy,
    call: Call,
    using: str,
    acknowledge: Acknowledge | None,
) -> Outcome:
    try:
        if policy.atomic:
            with transaction.atomic(using=using):
                call(found.receiver, kwargs, policy.timeout)
                if not outbox.complete(claimed, using=using):
                    raise LeaseLost
        else:
            call(found.receiver, kwargs, policy.timeout)
    except LeaseLost:
        return Outcome.LEASE_LOST
    except Retry as retry:
        return _outcome(
            outbox.retry_later(claimed, delay=retry.delay, using=using),
            Outcome.RETRYING,
        )
    except Exception as error:
        return _failed(claimed, policy, error, using)
    if policy.atomic:
        return Outcome.COMPLETED
    if acknowledge is not None:
        return _outcome(acknowledge(claimed) is not False, Outcome.COMPLETED)
    return _outcome(outbox.complete(claimed, using=using), Outcome.COMPLETED)


def _failed(
    claimed: outbox.Claimed, policy: Policy, error: Exception, using: str
) -> Outcome:
    text = "".join(traceback.format_exception(error))
    reason = (
        "not_retryable"
        if not policy.retries(error)
        else "max_attempts"
        if claimed.attempt >= claimed.max_attempts
        else None
    )
    if reason is not None:
        logger.error(
            "Delivery %s of %s is dead after attempt %s of %s (%s): %s",
            claimed.id,
            claimed.receiver,
            claimed.attempt,
            claimed.max_attempts,
            reason,
            type(error).__name__,
        )
        applied = outbox.fail(
            claimed, error=text, reason=reason, retry_in=None, using=using
        )
        return _outcome(applied, Outcome.DEAD)
    delay = policy.backoff.delay(claimed.attempt)
    # A receiver that lost its connection in an outage is retried like any
    # failure, but said once in the outage's lines, not once per delivery.
    if not _outage.receiver_lost(error, using=using, log=logger):
        logger.warning(
            "Delivery %s of %s failed on attempt %s of %s (%s); retrying in %.3f s.",
            claimed.id,
            claimed.receiver,
            claimed.attempt,
            claimed.max_attempts,
            type(error).__name__,
            delay.total_seconds(),
        )
    applied = outbox.fail(
        claimed, error=text, reason="error", retry_in=delay, using=using
    )
    return _outcome(applied, Outcome.RETRYING)


def _bury(claimed: outbox.Claimed, reason: str, text: str, using: str) -> Outcome:
    logger.error("Delivery %s of %s is dead: %s", claimed.id, claimed.receiver, reason)
    return _outcome(
        outbox.fail(claimed, error=text, reason=reason, retry_in=None, using=using),
        Outcome.DEAD,
    )


def _outcome(applied: bool, outcome: Outcome) -> Outcome:
    return outcome if applied else Outcome.LEASE_LOST


def _describe(error: BaseException) -> str:
    # A decode error names what was wrong, never the payload's content.
    return f"{type(error).__name__}: {error}"


def call_receiver(
    receiver: Callable[..., Any], kwargs: dict[str, Any], timeout: timedelta | None
) -> Any:
    """Call ``receiver`` here; a coroutine one through ``async_to_sync``, cancelled
    after ``timeout``. The default ``call`` of :func:`run_delivery`."""
    if iscoroutinefunction(receiver):
        return async_to_sync(_within(receiver, timeout))(**kwargs)
    return receiver(**kwargs)


def call_on(loop: asyncio.AbstractEventLoop) -> Call:
    """A ``call`` for :func:`run_delivery` that calls a plain receiver here
    and runs a coroutine receiver on ``loop`` (which runs on a thread of its
    own), cancelled after ``timeout``, returning once it has ended."""

    def call(
        receiver: Callable[..., Any], kwargs: dict[str, Any], timeout: timedelta | None
    ) -> Any:
        if not iscoroutinefunction(receiver):
            return receiver(**kwargs)
        coroutine = receiver(**kwargs)
        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout.total_seconds())
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    return call


def _within(
    receiver: Callable[..., Awaitable[Any]], timeout: timedelta | None
) -> Callable[..., Awaitable[Any]]:
    """A coroutine receiver cancelled after ``timeout`` (TimeoutError, retried)."""
    if timeout is None:
        return receiver

    async def bounded(**kwargs: Any) -> Any:
        return await asyncio.wait_for(receiver(**kwargs), timeout.total_seconds())

    return bounded
