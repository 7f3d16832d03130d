"""Seeing what runs: timing reports and warnings about receivers.

The dispatch loop measures every receiver call with ``perf_counter_ns`` and
calls into this module only when something deserves a word: a receiver
slower than ``SIGNALBOX["SLOW_RECEIVER_MS"]``, a synchronous ``send()`` that
held a running event loop longer than ``SIGNALBOX["LOOP_BLOCK_MS"]``, or a
deferred receiver that failed where no caller could see it. The hot path
therefore pays for two clock readings and a comparison, nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.dispatch import Signal

from signalbox import registry

logger = logging.getLogger("signalbox.observe")
failures = logger.getChild("failures")


def receiver_name(receiver: Callable[..., Any]) -> str:
    """The name a person knows a receiver by: its registry key, or module.qualname."""
    described = getattr(receiver, "signalbox_key", None)
    if isinstance(described, str):
        return described
    return registry.receiver_key(receiver)


def slow_receiver(
    signal: object, sender: object, receiver: Callable[..., Any], duration_ns: int
) -> None:
    """Warn, once for this call, that a receiver took longer than the limit."""
    logger.warning(
        "Slow signal receiver: %s took %.1f ms for %s (sender %s). "
        "It runs in the caller's thread and the caller waits for it; %s",
        receiver_name(receiver),
        duration_ns / 1e6,
        signal_label(signal),
        registry.describe_sender(sender),
        _advice(receiver),
        extra={
            "signalbox_signal": signal_label(signal),
            "signalbox_receiver": receiver_name(receiver),
            "signalbox_duration_ms": duration_ns / 1e6,
        },
    )


def _advice(receiver: Callable[..., Any]) -> str:
    info = getattr(receiver, "info", None)
    if getattr(info, "run", None) == "on_commit":
        return (
            'run="on_commit" only moves it after the commit; connect it with '
            'run="background" to take it off the request path.'
        )
    return (
        'connect it with run="on_commit" or run="background" to take it off '
        "the request path."
    )


def loop_blocked(
    signal: object,
    sender: object,
    timings: Sequence[tuple[Callable[..., Any], int]],
    total_ns: int,
    method: str = "send",
) -> None:
    """Warn that a synchronous send held a running event loop, naming each share.

    ``method`` is the one that was called (``send`` or ``send_robust``); the
    advice names its async twin.
    """
    shares = ", ".join(
        f"{receiver_name(receiver)} {duration / 1e6:.1f} ms "
        f"({100 * duration / total_ns if total_ns else 0:.0f}%)"
        for receiver, duration in sorted(timings, key=lambda item: -item[1])
    )
    logger.warning(
        "%s.%s() blocked the running event loop for %.1f ms (sender %s): %s. "
        "Use `await %s.a%s(...)` from async code so synchronous receivers run "
        "in a thread and coroutine receivers are awaited.",
        signal_label(signal),
        method,
        total_ns / 1e6,
        registry.describe_sender(sender),
        shares,
        signal_label(signal).rpartition(".")[2],
        method,
        extra={
            "signalbox_signal": signal_label(signal),
            "signalbox_blocked_ms": total_ns / 1e6,
        },
    )


def deferred_failure(
    signal: object, sender: object, key: str, run: str, error: BaseException
) -> None:
    """Log a deferred receiver's exception, which no caller is left to see."""
    failures.error(
        "Receiver %s (run=%r) failed for %s (sender %s): %s: %s",
        key,
        run,
        signal_label(signal),
        registry.describe_sender(sender),
        type(error).__name__,
        error,
        exc_info=error,
        extra={"signalbox_signal": signal_label(signal), "signalbox_receiver": key},
    )


def signal_label(signal: object) -> str:
    """The dotted name of a signal (see :func:`signalbox.registry.signal_name`)."""
    if isinstance(signal, Signal):
        return registry.signal_name(signal)
    return repr(signal)
