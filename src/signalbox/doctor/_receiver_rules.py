"""Rules about connected receivers, read from this process: what runs in the
request that should not, what runs twice, what cannot travel."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from signalbox import inventory
from signalbox.doctor._calls import BlockingCall, blocking_calls
from signalbox.doctor._findings import Context, Finding, Severity

_IN_REQUEST = ("inline", "on_commit")


def blocking_io(context: Context) -> Iterator[Finding]:
    """SB101: an inline or on_commit receiver whose code (or a function of the
    project it calls) does blocking I/O, so every send waits for it."""
    for signal, listing, function in context.receivers:
        if listing.run not in _IN_REQUEST:
            continue
        calls = blocking_calls(function, context.scope)
        if calls:
            yield _blocking_finding(signal, listing, function, calls)


def _blocking_finding(
    signal: str,
    listing: inventory.ReceiverListing,
    function: object,
    calls: list[BlockingCall],
) -> Finding:
    file = getattr(getattr(function, "__code__", None), "co_filename", "?")
    described = " and ".join(dict.fromkeys(_described(call) for call in calls))
    if listing.coroutine:
        waits = "a coroutine that blocks stops its whole event loop meanwhile"
    elif listing.run == "inline":
        waits = "every send waits for it"
    else:
        waits = "the request waits for it after the commit"
    fix = (
        'Connect it with run="background" (a worker runs it, after the '
        'commit); run="on_commit" if it must stay in this process and see '
        "committed data."
        if listing.run == "inline"
        else 'Connect it with run="background": a worker runs it after the '
        "commit, outside the request."
    )
    return Finding(
        id="SB101",
        severity=Severity.WARNING,
        subject=listing.key,
        location=inventory.short_location(f"{file}:{calls[0].line}"),
        why=(
            f"It runs {listing.run} on {signal} and calls {described}: "
            f"{waits}, and its failures are the sender's."
        ),
        fix=fix,
    )


def _described(call: BlockingCall) -> str:
    """``time.sleep (sleeps)``, with the project's functions it goes through."""
    through = f", through {' then '.join(call.through)}" if call.through else ""
    return f"{call.name} ({call.does}{through})"


def duplicate_connections(context: Context) -> Iterator[Finding]:
    """SB112: one receiver (same key, same ``file:line``) connected more than
    once to a signal for the same sender, without ``dispatch_uid``: each send
    runs it that many times."""
    counted: dict[tuple[str, str, str | None, str], int] = defaultdict(int)
    for signal, listing, _ in context.receivers:
        counted[(signal, listing.key, listing.sender, listing.location)] += 1
    # sender is None for "any sender": sort it first, not against a str.
    for (signal, key, sender, location), count in sorted(
        counted.items(),
        key=lambda item: (item[0][0], item[0][1], item[0][2] or "", item[0][3]),
    ):
        if count > 1:
            yield Finding(
                id="SB112",
                severity=Severity.WARNING,
                subject=key,
                location=location,
                why=(
                    f"It is connected {count} times to {signal} (sender "
                    f"{sender or 'any'}): each connect made a new function "
                    f"(defined inside a function that ran {count} times, or a "
                    f"module imported under two names), so every send runs "
                    f"it {count} times."
                ),
                fix=(
                    "Connect it once, from a module-level function (in "
                    "AppConfig.ready()), or give the connect a dispatch_uid."
                ),
            )


def untravelled_arguments(context: Context) -> Iterator[Finding]:
    """SB120: a background receiver on a signal whose arguments cannot travel
    and that neither prepares nor excludes them (``manage.py check``'s
    signalbox.W010, from the same reading)."""
    for signal, listing, _ in context.receivers:
        if listing.untravelled:
            names = ", ".join(listing.untravelled)
            yield Finding(
                id="SB120",
                severity=Severity.ERROR,
                subject=listing.key,
                location=listing.location,
                why=(
                    f"It runs in the background, but {signal} sends {names}, "
                    f"which cannot travel to a worker: every send raises "
                    f"CodecError in the sender (signalbox.W010)."
                ),
                fix=(
                    f"Connect it with exclude={list(listing.untravelled)!r} or "
                    f"prepare= returning what it needs, or run it inline."
                ),
            )
