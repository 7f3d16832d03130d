"""Assertions about what a capture recorded, with messages that say what happened."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any

from django.dispatch import Signal as DjangoSignal

from signalbox import observe
from signalbox.testing._capture import Capture, current
from signalbox.testing._records import Happened, Reached, Sent

_shown = reprlib.Repr()
_shown.maxstring = 60
_shown.maxother = 60


def _within(capture: Capture | None, asked: str) -> Capture:
    found = capture if capture is not None else current()
    if found is None:
        raise RuntimeError(
            f"{asked} needs a capture: call it inside `with "
            f"signalbox.testing.capture():`, or use the pytest fixture `signalbox`."
        )
    return found


def assert_delivered(
    receiver: Callable[..., Any] | str,
    capture: Capture | None = None,
    /,
    **kwargs_subset: Any,
) -> Reached:
    """Assert that a recorded send reached ``receiver`` with these arguments.

    ``receiver`` is the connected function or its key. Reached means it ran
    or raised (inline), ran or waits for the commit (on-commit), or had its
    row written (background). ``kwargs_subset`` must each equal the send's
    argument of that name (``sender=`` matches the sender). Looks in
    ``capture``, else the innermost one open. Returns what happened there
    (the last match); the failure message lists every send recorded.
    """
    recorded = _within(capture, "assert_delivered()")
    matches = [
        reached
        for sent in recorded.sent
        if _matches(sent, kwargs_subset)
        for reached in [sent.reached(receiver)]
        if reached is not None
    ]
    if matches:
        return matches[-1]
    asked = _call("assert_delivered", _name(receiver), kwargs_subset)
    reached_at_all = recorded.deliveries(receiver)
    why = (
        f"it was reached {_times(len(reached_at_all))}, with other arguments"
        if reached_at_all
        else "no send reached it"
    )
    raise AssertionError(f"{asked} failed: {why}.\n{describe(recorded)}")


def assert_not_delivered(
    receiver: Callable[..., Any] | str,
    capture: Capture | None = None,
    /,
    **kwargs_subset: Any,
) -> None:
    """Assert that no recorded send reached ``receiver`` (with these arguments,
    when given); the failure message lists the sends that did."""
    recorded = _within(capture, "assert_not_delivered()")
    offending = [
        sent
        for sent in recorded.sent
        if sent.reached(receiver) is not None and _matches(sent, kwargs_subset)
    ]
    if offending:
        asked = _call("assert_not_delivered", _name(receiver), kwargs_subset)
        lines = "\n".join(_describe_send(n, s) for n, s in enumerate(offending, 1))
        raise AssertionError(
            f"{asked} failed: {_times(len(offending))} a send reached it:\n{lines}"
        )


def assert_sent(
    signal: DjangoSignal, capture: Capture | None = None, /, **kwargs_subset: Any
) -> Sent:
    """Assert that ``signal`` was sent with these arguments (``sender=`` matches
    the sender); return the last such send. The failure message lists every
    send recorded."""
    recorded = _within(capture, "assert_sent()")
    matches = [s for s in recorded.sends(signal) if _matches(s, kwargs_subset)]
    if matches:
        return matches[-1]
    asked = _call("assert_sent", observe.signal_label(signal), kwargs_subset)
    count = len(recorded.sends(signal))
    why = (
        f"it was sent {_times(count)}, with other arguments"
        if count
        else "it was not sent"
    )
    raise AssertionError(f"{asked} failed: {why}.\n{describe(recorded)}")


def describe(capture: Capture) -> str:
    """Every send ``capture`` recorded, and what happened at each receiver."""
    if not capture.sent:
        return (
            "No send was recorded. A capture records the sends of signalbox "
            "signals, and of other signals once signalbox has a receiver on them "
            "(is the receiver connected? signalbox.testing.connected_to() does it "
            "for one test)."
        )
    lines = [f"{len(capture.sent)} send(s) recorded:"]
    lines += [_describe_send(n, s) for n, s in enumerate(capture.sent, 1)]
    return "\n".join(lines)


def _describe_send(number: int, sent: Sent) -> str:
    arguments = ", ".join(
        [f"sender={_shown.repr(sent.sender)}"]
        + [f"{name}={_shown.repr(value)}" for name, value in sent.kwargs.items()]
    )
    lines = [f"  {number}. {observe.signal_label(sent.signal)}({arguments})"]
    if not sent.receivers:
        lines.append("       reached no receiver")
    lines += [f"       {_describe_reached(r)}" for r in sent.receivers]
    return "\n".join(lines)


def _describe_reached(reached: Reached) -> str:
    what = {
        Happened.RAN: "ran after the commit" if reached.after_commit else "ran",
        Happened.RAISED: f"raised {reached.error!r}",
        Happened.ON_COMMIT: "waits for the commit (drain() runs it under a TestCase)",
        Happened.WRITTEN: f"written to the outbox as delivery {reached.delivery_id}",
    }[reached.happened]
    return f"{reached.key} (run={reached.run!r}): {what}"


def _matches(sent: Sent, subset: dict[str, Any]) -> bool:
    for name, value in subset.items():
        if name == "sender":
            if sent.sender != value:
                return False
        elif name not in sent.kwargs or sent.kwargs[name] != value:
            return False
    return True


def _name(receiver: Callable[..., Any] | str) -> str:
    return receiver if isinstance(receiver, str) else observe.receiver_name(receiver)


def _call(function: str, first: str, subset: dict[str, Any]) -> str:
    shown = [first] + [f"{name}={_shown.repr(v)}" for name, v in subset.items()]
    return f"{function}({', '.join(shown)})"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
