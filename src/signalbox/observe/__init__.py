"""Seeing what runs: timing reports and warnings about receivers.

The dispatch loop measures every receiver call with ``perf_counter_ns`` and
calls into this module only when something deserves a word: a receiver
slower than ``SIGNALBOX["SLOW_RECEIVER_MS"]``, a synchronous ``send()`` that
held a running event loop longer than ``SIGNALBOX["LOOP_BLOCK_MS"]``, or a
deferred receiver that failed where no caller could see it. The hot path
therefore pays for two clock readings and a comparison, nothing more.

A slow-receiver warning says where the receiver ran (:class:`Where`), which
only the slow path works out, from the frames that called it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from asyncio import AbstractEventLoop
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable, Sequence
from types import CodeType, FrameType
from typing import Any

from asgiref import sync as _asgiref_sync
from django.dispatch import Signal, dispatcher

from signalbox import conf, registry

logger = logging.getLogger("signalbox.observe")
failures = logger.getChild("failures")


class Where(enum.Enum):
    """Where a receiver ran, as a slow-receiver warning tells it."""

    CALLER = "caller"
    """A synchronous receiver, in the thread that called ``send()``."""
    LOOP_THREAD = "loop_thread"
    """A synchronous receiver, called by ``send()`` on a running event loop's thread."""
    ASEND_THREAD = "asend_thread"
    """A synchronous receiver, run by ``asend()`` in a ``sync_to_async`` thread."""
    LOOP = "loop"
    """A coroutine receiver, awaited by ``asend()`` on the caller's event loop."""
    ASYNC_TO_SYNC = "async_to_sync"
    """A coroutine receiver, awaited by ``send()`` through ``async_to_sync()``."""
    COMMITTING_THREAD = "committing_thread"
    """An on-commit receiver, after the commit, in the thread that committed."""
    TASK = "task"
    """An on-commit coroutine receiver, in a task of its own on the event loop."""


_PLACES = {
    Where.CALLER: "in the caller's thread, which waited for it",
    Where.LOOP_THREAD: (
        "in the caller's thread, on its running event loop, which could run "
        "nothing else meanwhile"
    ),
    Where.ASEND_THREAD: (
        "in a sync_to_async worker thread, while the caller's asend() waited "
        "for it (the event loop did not)"
    ),
    Where.LOOP: "on the caller's event loop, awaited by asend(), which waited for it",
    Where.ASYNC_TO_SYNC: (
        "on an event loop of async_to_sync(), while the caller's thread waited for it"
    ),
    Where.COMMITTING_THREAD: "in the thread that committed, which waited for it",
    Where.TASK: "as a task on the event loop, which nothing awaited",
}

_OFF_THE_REQUEST_PATH = (
    'connect it with run="on_commit" or run="background" to take it off the '
    "request path."
)
_ON_COMMIT_DID_NOT_HELP = (
    'run="on_commit" only moves it to the commit (or runs it at once when no '
    'transaction is open): connect it with run="background" to take it off the '
    "request path."
)
_ADVICE = {
    Where.CALLER: _OFF_THE_REQUEST_PATH,
    Where.LOOP_THREAD: (
        "from async code, send with `await {signal}.asend(...)` so that it runs "
        'off the loop, or connect it with run="background".'
    ),
    Where.ASEND_THREAD: _OFF_THE_REQUEST_PATH,
    Where.LOOP: _OFF_THE_REQUEST_PATH,
    Where.ASYNC_TO_SYNC: _OFF_THE_REQUEST_PATH,
    Where.COMMITTING_THREAD: _ON_COMMIT_DID_NOT_HELP,
    Where.TASK: (
        "nothing waited for it, but whatever it did without awaiting held the "
        'loop: connect it with run="background" to move the work to a worker.'
    ),
}


def receiver_name(receiver: Callable[..., Any]) -> str:
    """The name a person knows a receiver by: its registry key, or module.qualname."""
    described = getattr(receiver, "signalbox_key", None)
    if isinstance(described, str):
        return described
    return registry.receiver_key(receiver)


def call_ended(
    start_ns: int,
    signal: object,
    sender: object,
    receiver: Callable[..., Any],
    where: Where | Callable[[], Where],
    *,
    after_commit: bool = False,
    at_once: bool = False,
) -> int:
    """Time a receiver call that began at ``start_ns`` and warn if it was slow.

    ``start_ns`` is a ``time.perf_counter_ns()`` reading. A call longer than
    ``SIGNALBOX["SLOW_RECEIVER_MS"]`` is reported by :func:`slow_receiver`
    (with ``after_commit`` and ``at_once``); ``where`` may be a function that
    names the place, called only then. Returns the call's duration in ns.
    (The synchronous send loop times its receivers inline: it is the hot path.)
    """
    elapsed = time.perf_counter_ns() - start_ns
    if elapsed > conf.get().slow_receiver_ns:
        place = where if isinstance(where, Where) else where()
        slow_receiver(
            signal,
            sender,
            receiver,
            elapsed,
            place,
            after_commit=after_commit,
            at_once=at_once,
        )
    return elapsed


def slow_receiver(
    signal: object,
    sender: object,
    receiver: Callable[..., Any],
    duration_ns: int,
    where: Where,
    *,
    after_commit: bool = False,
    at_once: bool = False,
    key: str | None = None,
) -> None:
    """Warn, once for this call, that a receiver took longer than the limit.

    The warning says where it ran (``where``) and, for an on-commit receiver,
    when: ``after_commit``, or ``at_once`` because no transaction was open.
    Its advice fits the place and the receiver's mode. ``key`` names the
    receiver when ``receiver`` is not what it is known by.
    """
    name = key or receiver_name(receiver)
    label = signal_label(signal)
    place = _PLACES[where]
    if after_commit:
        place = f"after the commit, {place}"
    elif at_once:
        place = f"at once, with no transaction open, {place}"
    advice = _ADVICE[where]
    if _run(receiver) == "on_commit" and where not in {Where.LOOP_THREAD, Where.TASK}:
        advice = _ON_COMMIT_DID_NOT_HELP
    logger.warning(
        "Slow signal receiver: %s took %.1f ms for %s (sender %s). It ran %s; %s",
        name,
        duration_ns / 1e6,
        label,
        registry.describe_sender(sender),
        place,
        advice.replace("{signal}", label.rpartition(".")[2]),
        extra={
            "signalbox_signal": label,
            "signalbox_receiver": name,
            "signalbox_duration_ms": duration_ns / 1e6,
            "signalbox_where": where.value,
        },
    )


def _run(receiver: Callable[..., Any]) -> str | None:
    info = getattr(receiver, "info", None)
    run = getattr(info, "run", None)
    return run if isinstance(run, str) else None


# -- where a receiver ran -------------------------------------------------------

_DJANGO_SENDS: dict[CodeType, str] = {
    Signal.send.__code__: "send",
    Signal.send_robust.__code__: "send_robust",
}
"""The code of Django's own synchronous sends, which call receivers directly."""


def sync_place(dispatcher_frame: FrameType | None) -> Where:
    """Where a synchronous receiver called by ``dispatcher_frame`` runs.

    On a thread whose event loop is running, it holds the loop. Otherwise,
    if the function that called it was itself started by ``sync_to_async``
    (the sync half of an ``asend()``, Django's or signalbox's), an awaiting
    coroutine waits for this thread; else the caller waits in its own thread.
    """
    if _running_loop() is not None:
        return Where.LOOP_THREAD
    frame = dispatcher_frame
    if frame is None:
        return Where.CALLER
    code = frame.f_code
    while frame is not None and frame.f_code is code:  # batched: calls itself
        frame = frame.f_back
    if frame is not None and _started_by_sync_to_async(frame.f_code):
        return Where.ASEND_THREAD
    return Where.CALLER


def _started_by_sync_to_async(code: CodeType) -> bool:
    return code.co_filename == _asgiref_sync.__file__ and code.co_qualname.startswith(
        "SyncToAsync."
    )


def coroutine_place(caller: CodeType | None) -> Where:
    """Where a coroutine receiver that ``caller``'s code called is awaited.

    Django's ``send()`` awaits coroutine receivers through ``async_to_sync()``,
    its ``asend()`` on the caller's loop; anything else awaits it on a loop.
    """
    if caller is not None and caller.co_filename == dispatcher.__file__:
        method = caller.co_qualname.split(".")[1:2]
        if method and method[0] in _DJANGO_SENDS.values():
            return Where.ASYNC_TO_SYNC
    return Where.LOOP


# -- a plain Django signal's send() on a running loop ------------------------------


class _Send:
    """One Django ``send()`` on a running loop: its signalbox receivers' times."""

    __slots__ = ("method", "sender", "signal", "timings")

    def __init__(self, signal: object, sender: object, method: str) -> None:
        self.signal = signal
        self.sender = sender
        self.method = method
        self.timings: list[tuple[Callable[..., Any], int]] = []


class _Blocked:
    """The sends that held one loop since it last ran a callback.

    Each is keyed by the frame of Django's ``send()``, held until the report
    so that two sends in a row cannot share a key.
    """

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.sends: dict[FrameType, _Send] = {}


_here = threading.local()


def sync_receiver_ran(
    signal: object,
    sender: object,
    receiver: Callable[..., Any],
    duration_ns: int,
    dispatcher_frame: FrameType | None,
    *,
    at_once: bool = False,
) -> None:
    """Report a synchronous call that a signal's own timing does not see.

    For receivers connected through signalbox to a signal that is not
    signalbox's (Django calls them, through an adapter): a slow call is
    reported at once; on a running loop's thread, the call's time counts
    towards the send that made it (``dispatcher_frame``, Django's
    ``send()``), which is reported once the loop gets control back.
    """
    if duration_ns > conf.get().slow_receiver_ns:
        where = sync_place(dispatcher_frame)
        slow_receiver(signal, sender, receiver, duration_ns, where, at_once=at_once)
    loop = _running_loop()
    if loop is None or dispatcher_frame is None:
        return
    method = _DJANGO_SENDS.get(dispatcher_frame.f_code)
    if method is None:  # not a send we know: nothing to report it against
        return
    blocked: _Blocked | None = getattr(_here, "blocked", None)
    if blocked is None or blocked.loop is not loop:
        blocked = _here.blocked = _Blocked(loop)
        # Runs once the send (and the code around it) gives the loop back.
        loop.call_soon(_report_blocked, blocked)
    send = blocked.sends.get(dispatcher_frame)
    if send is None:
        send = blocked.sends[dispatcher_frame] = _Send(signal, sender, method)
    send.timings.append((receiver, duration_ns))


def _report_blocked(blocked: _Blocked) -> None:
    if getattr(_here, "blocked", None) is blocked:
        _here.blocked = None
    limit = conf.get().loop_block_ns
    for send in blocked.sends.values():
        total = sum(duration for _, duration in send.timings)
        if total > limit:
            loop_blocked(
                send.signal,
                send.sender,
                send.timings,
                total,
                send.method,
                every_receiver=False,
            )
    blocked.sends.clear()


def loop_blocked(
    signal: object,
    sender: object,
    timings: Sequence[tuple[Callable[..., Any], int]],
    total_ns: int,
    method: str = "send",
    *,
    every_receiver: bool = True,
) -> None:
    """Warn that a synchronous send held a running event loop, naming each share.

    ``method`` is the one that was called (``send`` or ``send_robust``); the
    advice names its async twin. ``every_receiver=False`` says only the
    receivers signalbox connected were timed (a signal that is not
    signalbox's), so the loop was held at least that long.
    """
    shares = ", ".join(
        f"{receiver_name(receiver)} {duration / 1e6:.1f} ms "
        f"({100 * duration / total_ns if total_ns else 0:.0f}%)"
        for receiver, duration in sorted(timings, key=lambda item: -item[1])
    )
    logger.warning(
        "%s.%s() blocked the running event loop for %s%.1f ms (sender %s): %s%s. "
        "Use `await %s.a%s(...)` from async code so synchronous receivers run "
        "in a thread and coroutine receivers are awaited.",
        signal_label(signal),
        method,
        "" if every_receiver else "at least ",
        total_ns / 1e6,
        registry.describe_sender(sender),
        shares,
        "" if every_receiver else " (receivers connected through signalbox)",
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
