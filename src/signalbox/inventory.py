"""Which receivers are connected to which signals, and how each one runs.

This is what ``manage.py signalbox list`` prints. It finds every signal
object in the process (Django's, third-party apps', signalbox's), asks each
one, through Django's own ``_live_receivers(sender)``, which receivers answer
any sender and which answer each sender it can think of (every installed
model, and every sender signalbox connected a receiver for), and joins what
it finds with the registry. Receivers connected with Django's plain
``connect`` appear as inline, keyed by module.qualname.

It reads no private layout of a signal, so it works alike on Django 5.2 and
6.x. The one thing it cannot see is a plain Django receiver whose sender
filter is neither a model nor a sender signalbox knows.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.apps import apps
from django.dispatch import Signal

from signalbox import _travel, registry
from signalbox._adapters import Adapter


@dataclass(frozen=True, slots=True)
class ReceiverListing:
    """One connection of a receiver, as ``signalbox list`` shows it."""

    key: str
    run: str
    sender: str | None
    location: str
    connected_by: str  # "signalbox" or "django"
    coroutine: bool = False
    """Whether the receiver is a coroutine function (``async def``)."""
    untravelled: tuple[str, ...] = ()
    """Arguments of this signal that cannot travel to this background receiver
    and that it neither prepares nor excludes (``manage.py check``'s
    signalbox.W010): its sends would fail."""

    @property
    def mode(self) -> str:
        """How it runs, as the table shows it: ``run``, then ``async`` for a
        coroutine receiver (``inline async``)."""
        return f"{self.run} async" if self.coroutine else self.run


@dataclass(frozen=True, slots=True)
class SignalListing:
    """A signal and the receivers connected to it, in the order they run."""

    signal: str
    receivers: tuple[ReceiverListing, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form of this listing."""
        return asdict(self)


def connected_receivers() -> list[SignalListing]:
    """Every signal that has receivers now, sorted by name, with its receivers."""
    listings = []
    for signal in _all_signals():
        receivers = tuple(listing for listing, _ in _receivers_of(signal))
        if receivers:
            listings.append(SignalListing(registry.signal_name(signal), receivers))
    return sorted(listings, key=lambda listing: listing.signal)


def connected_callables() -> list[tuple[str, ReceiverListing, Callable[..., Any]]]:
    """What :func:`connected_receivers` lists, one connection a row, with the
    signal's name and the function that runs (the receiver itself, not the
    adapter signalbox connected in its place): for a reader of its code, such
    as ``signalbox doctor``."""
    found = []
    for signal in _all_signals():
        name = registry.signal_name(signal)
        for listing, function in _receivers_of(signal):
            found.append((name, listing, function))
    return sorted(found, key=lambda row: row[0])


def _all_signals() -> list[Signal]:
    found: dict[int, Signal] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): a lazy object answers isinstance() by
        # building what it wraps, which must not happen as a side effect here.
        if issubclass(type(obj), Signal):
            found[id(obj)] = obj
    for signal in registry.registry.signals():
        found[id(signal)] = signal
    return list(found.values())


def _receivers_of(
    signal: Signal,
) -> list[tuple[ReceiverListing, Callable[..., Any]]]:
    any_sender = _live(signal, _NoSender())
    listed = [_listed(signal, receiver, None) for receiver in any_sender]
    for sender in _candidate_senders(signal):
        specific = _without(_live(signal, sender), any_sender)
        listed.extend(_listed(signal, receiver, sender) for receiver in specific)
    return listed


def _listed(
    signal: Signal, receiver: Callable[..., Any], sender: object
) -> tuple[ReceiverListing, Callable[..., Any]]:
    function = receiver.receiver if isinstance(receiver, Adapter) else receiver
    return _listing(signal, receiver, sender), function or receiver


class _NoSender:
    """A sender no receiver filters on: probing with it finds any-sender receivers."""


def _live(signal: Signal, sender: object) -> list[Callable[..., Any]]:
    synchronous, asynchronous = signal._live_receivers(sender)
    return [*synchronous, *asynchronous]


def _without(
    receivers: list[Callable[..., Any]], others: Iterable[Callable[..., Any]]
) -> list[Callable[..., Any]]:
    remaining = list(receivers)
    for other in others:
        for index, receiver in enumerate(remaining):
            if receiver is other or (_same_method(receiver, other)):
                del remaining[index]
                break
    return remaining


def _same_method(a: object, b: object) -> bool:
    # A weakly held bound method comes back as a new object on every lookup.
    self_a, self_b = getattr(a, "__self__", None), getattr(b, "__self__", None)
    return self_a is not None and self_a is self_b and a == b


def _candidate_senders(signal: Signal) -> list[object]:
    senders: dict[int, object] = {}
    if apps.ready:
        for model in apps.get_models(include_auto_created=True):
            senders[id(model)] = model
    for sender in registry.registry.senders(signal):
        if not isinstance(sender, str):
            senders[id(sender)] = sender
    return list(senders.values())


def _listing(
    signal: Signal, receiver: Callable[..., Any], sender: object
) -> ReceiverListing:
    if isinstance(receiver, Adapter):
        info: registry.ReceiverInfo | None = receiver.info
        coroutine = iscoroutinefunction(receiver.receiver)
    else:
        info = registry.registry.info(signal, receiver, sender)
        coroutine = iscoroutinefunction(receiver)
    if info is not None:
        name = registry.signal_name(signal)
        return ReceiverListing(
            key=info.key,
            run=info.run,
            sender=info.sender,
            location=short_location(info.location),
            connected_by="signalbox",
            coroutine=coroutine,
            untravelled=tuple(_travel.left_in(name, info.keyed, info.travel)),
        )
    return ReceiverListing(
        key=registry.receiver_key(receiver),
        run="inline",
        sender=registry.describe_sender(sender),
        location=short_location(registry.source_location(receiver)),
        connected_by="django",
        coroutine=coroutine,
    )


def short_location(location: str) -> str:
    """``file:line`` with the file relative to the current directory when it
    is under it (as people read it in a project), else as given."""
    path, _, line = location.rpartition(":")
    if not path:
        return location
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return location
    return f"{relative if not relative.startswith('..') else path}:{line}"
