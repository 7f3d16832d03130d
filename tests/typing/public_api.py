"""Uses of signalbox's public API that must type-check under ``mypy --strict``.

This file is checked, never run: ``make types`` runs mypy on it, so a change
that makes ordinary, correct code fail to type-check fails the build.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

import signalbox
from signalbox import ReceiverError, Signal, connect, receiver

order_paid = Signal()
cached = Signal(use_caching=True)


@receiver(order_paid)
def inline(sender: object, **kwargs: Any) -> None: ...


@receiver([order_paid, post_save], run="on_commit", dispatch_uid="cache.refresh")
def refresh(sender: object, **kwargs: Any) -> int:
    return 1


@receiver(order_paid, sender=object, weak=False)
async def push(sender: object, **kwargs: Any) -> str:
    return "sent"


def login_details(sender: object, request: Any, **kwargs: Any) -> dict[str, Any]:
    return {"ip": request.META.get("REMOTE_ADDR", "")}


@receiver(order_paid, run="background", prepare=login_details, snapshot=False)
def record_login(sender: object, ip: str, **kwargs: Any) -> None: ...


def wiring() -> None:
    connect(post_save, inline, run="on_commit", exclude=["raw"])
    connect(post_save, inline, run="on_commit")
    order_paid.connect(inline, run="inline")
    disconnected: bool = order_paid.disconnect(inline)
    responses: list[tuple[Any, Any]] = order_paid.send(sender=None, order=1)
    robust = order_paid.send_robust(None)
    del disconnected, responses, robust
    # The decorator hands back the function it was given, with its type.
    assert refresh(sender=None) == 1
    try:
        connect(order_paid, lambda sender, **kw: None, run="background")
    except ReceiverError as error:
        print(error.key, error.receiver)
    except signalbox.ConfigurationError:
        pass


async def async_wiring() -> None:
    await order_paid.asend(sender=None)
    await order_paid.asend_robust(sender=None)


# -- signalbox.testing --------------------------------------------------------

from datetime import timedelta  # noqa: E402

from signalbox import testing  # noqa: E402
from signalbox.testing.pytest_plugin import Kit  # noqa: E402


def a_test() -> None:
    with testing.capture() as sent, testing.connected_to(inline, order_paid):
        order_paid.send(sender=None)
        ran: list[testing.Ran] = testing.drain(until="empty", now=timedelta(1))
        outcomes: list[testing.Outcome] = [each.outcome for each in ran]
        reached: testing.Reached = testing.assert_delivered(inline, sent, x=1)
        happened: testing.Happened = reached.happened
        send: testing.Sent = testing.assert_sent(order_paid)
        testing.assert_not_delivered("a.key")
    with testing.muted(order_paid), testing.run_background_inline() as inline_capture:
        runs: list[testing.Ran] = inline_capture.runs
    del outcomes, happened, send, runs


@testing.run_background_inline
def an_inline_test() -> None: ...


@testing.run_background_inline()
def another_inline_test() -> None: ...


def a_pytest_test(signalbox: Kit) -> None:
    signalbox.drain(raise_errors=False)
    signalbox.assert_delivered(inline)
