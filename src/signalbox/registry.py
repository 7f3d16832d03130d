"""What signalbox knows about each receiver it connected, found by key.

Every receiver connected through signalbox is recorded here with a key
(``dispatch_uid`` if given, else ``module.qualname``), the mode it runs in, its
options and where it is defined. Modes that run a receiver outside the
sending process find it again by that key, so a key must name exactly one
function: signalbox refuses receivers it could not find again (lambdas,
closures, bound methods of instances; see :func:`require_findable`) and the
registry refuses keys that already name another function on the same signal.
Nothing here ever imports a path it is given.

How receivers, senders and signals are named is :mod:`signalbox._naming`'s
business; its functions are public here.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from django.dispatch import Signal as DjangoSignal

from signalbox import _refs
from signalbox._naming import (
    describe_sender,
    receiver_key,
    require_findable,
    signal_name,
    source_location,
)
from signalbox._travel import Travel
from signalbox.exceptions import ReceiverError
from signalbox.policy import Policy

__all__ = [
    "RUN_MODES",
    "Found",
    "ReceiverInfo",
    "Registry",
    "Run",
    "describe_sender",
    "receiver_key",
    "registry",
    "require_findable",
    "signal_name",
    "source_location",
]

Run: TypeAlias = Literal["inline", "on_commit", "background"]
"""How a receiver runs: the values of ``run=``."""

RUN_MODES: Final[tuple[Run, ...]] = get_args(Run)
"""Every mode; what each one means is its row in :data:`signalbox._modes.MODES`."""


@dataclass(frozen=True, slots=True)
class ReceiverInfo:
    """What signalbox knows about one connection of a receiver to a signal."""

    key: str
    run: Run
    sender: str | None
    location: str
    policy: Policy | None = None
    """How a background receiver is queued and retried; None for other modes."""
    travel: Travel | None = None
    """What of a send reaches a deferred receiver (``prepare=``, ``exclude=``,
    ``snapshot=``); None when the receiver said nothing about it."""
    keyed: bool = False
    """Its mode finds it again by key, from another process (a worker)."""


@dataclass(frozen=True, slots=True)
class Found:
    """A receiver the registry found by key, with its signal and what it knows."""

    signal: DjangoSignal
    receiver: Callable[..., Any]
    info: ReceiverInfo


@dataclass(slots=True)
class _Entry:
    info: ReceiverInfo
    connected: Callable[[], object | None]
    receiver: Callable[[], object | None]
    sender: Callable[[], object | None]

    def alive(self) -> bool:
        return self.connected() is not None and self.receiver() is not None


_registries = itertools.count()
# Taken at import: the registry's one weak reference is to its own bookkeeping
# object, never to a signal or receiver, whatever the code around it patches
# (Django's suite replaces weakref.ref to check weak=False makes none).
_reference = weakref.ref
_FIRST_PRUNE = 64


class _Connections:
    """What signalbox recorded for one signal, found by the object connected.

    The signal holds this object (as an attribute) and this object holds the
    signal, so recording a connection makes no weak reference to the signal;
    the registry reaches it through a weak reference to this object, and it
    is dropped as soon as its signal has no entries left.
    """

    __slots__ = ("__weakref__", "by_connected", "number", "prune_at", "signal", "size")

    def __init__(self, signal: DjangoSignal, number: int) -> None:
        self.signal = signal
        self.number = number
        self.by_connected: dict[int, list[_Entry]] = {}
        self.size = 0
        self.prune_at = _FIRST_PRUNE

    def entries(self) -> list[_Entry]:
        return [entry for bucket in self.by_connected.values() for entry in bucket]

    def add(self, connected: object, entry: _Entry) -> None:
        self.by_connected.setdefault(id(connected), []).append(entry)
        self.size += 1
        if self.size >= self.prune_at:
            # Entries of receivers that died are dropped here, in batches, so
            # recording stays O(1) however many receivers a signal has.
            self._prune()

    def remove(self, connected: object) -> list[_Entry]:
        bucket = self.by_connected.pop(id(connected), None)
        if bucket is None:
            return []
        removed: list[_Entry] = []
        kept: list[_Entry] = []
        for entry in bucket:
            (removed if entry.connected() is connected else kept).append(entry)
        if kept:  # a dead object's entries under a reused id
            self.by_connected[id(connected)] = kept
        self.size -= len(removed)
        return removed

    def _prune(self) -> None:
        for key, bucket in list(self.by_connected.items()):
            alive = [entry for entry in bucket if entry.alive()]
            if alive:
                self.by_connected[key] = alive
            else:
                del self.by_connected[key]
        self.size = sum(len(bucket) for bucket in self.by_connected.values())
        self.prune_at = max(_FIRST_PRUNE, 2 * self.size)


class Registry:
    """What signalbox connected, per signal, found by the object connected.

    The object connected is the receiver itself for inline receivers on a
    signalbox :class:`~signalbox.Signal`, and signalbox's adapter otherwise.
    Entries hold what they name as the signal does: weakly for a weak
    connection, strongly for ``weak=False`` (so recording one makes no weak
    reference Django would not); they vanish with the receiver or at its
    disconnect. A listing asks the signal which objects are live, so a
    receiver disconnected behind signalbox's back is never shown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signals: dict[int, weakref.ref[_Connections]] = {}
        self._number = next(_registries)  # its entries' key on each signal
        self._numbering = itertools.count()
        self._changes = 0

    @property
    def changes(self) -> int:
        """How many times a receiver was recorded or forgotten: what was read
        from the registry still holds while this number stays the same (but
        for receivers that were garbage-collected since)."""
        return self._changes

    def record(
        self,
        signal: DjangoSignal,
        connected: object,
        receiver: Callable[..., Any],
        sender: object,
        info: ReceiverInfo,
        *,
        weak: bool = True,
    ) -> None:
        """Remember ``info`` for ``connected`` on ``signal``.

        ``weak`` says how the signal holds ``connected``; the entry holds it
        (and the receiver) the same way. For a keyed mode, raises
        :class:`ReceiverError` if the key already names a different,
        still-living receiver on this signal.
        """
        hold = _weak if weak else _refs.strong
        with self._lock:
            connections = self._connections(signal, create=True)
            assert connections is not None
            if info.keyed:
                alive = [e for e in connections.entries() if e.alive()]
                _refuse_taken_key(alive, receiver, info)
            entry = _Entry(info, hold(connected), hold(receiver), _weak(sender))
            connections.add(connected, entry)
            self._changes += 1

    def check(
        self, signal: DjangoSignal, receiver: Callable[..., Any], info: ReceiverInfo
    ) -> None:
        """Raise :class:`ReceiverError` if :meth:`record` would refuse ``info``."""
        if info.keyed:
            alive = [e for e in self._entries(signal) if e.alive()]
            _refuse_taken_key(alive, receiver, info)

    def connections(
        self, signal: DjangoSignal, receiver: object = None
    ) -> list[tuple[object, object]]:
        """The (connected object, sender) pairs recorded for ``receiver`` (or all)."""
        return [
            (entry.connected(), entry.sender())
            for entry in self._entries(signal)
            if (receiver is None or entry.receiver() is receiver)
            and entry.connected() is not None
        ]

    def forget(self, signal: DjangoSignal, connected: object) -> list[_Entry]:
        """Drop what was recorded for ``connected`` (it was disconnected).

        Returns the entries dropped (their ``info`` says what they were).
        """
        with self._lock:
            connections = self._connections(signal)
            if connections is None:
                return []
            removed = connections.remove(connected)
            if not connections.by_connected:
                self._drop(connections)
            self._changes += 1
        return removed

    def info(
        self, signal: DjangoSignal, connected: object, sender: object = None
    ) -> ReceiverInfo | None:
        """What signalbox recorded for ``connected`` on ``signal``, or None."""
        found = None
        for entry in self._entries(signal):
            if entry.connected() is connected:
                if entry.sender() is sender:
                    return entry.info
                found = found or entry.info
        return found

    def signals(self) -> list[DjangoSignal]:
        """Every signal that signalbox connected a receiver to."""
        with self._lock:
            held = [reference() for reference in self._signals.values()]
        return [connections.signal for connections in held if connections is not None]

    def senders(self, signal: DjangoSignal) -> list[object]:
        """The sender filters signalbox connected receivers with on ``signal``."""
        found = [entry.sender() for entry in self._entries(signal)]
        return [sender for sender in found if sender is not None]

    def count(self, signal: DjangoSignal, runs: Iterable[Run]) -> int:
        """How many living connections ``signal`` has in the modes ``runs``."""
        runs = frozenset(runs)
        entries = self._entries(signal)
        return sum(1 for entry in entries if entry.info.run in runs and entry.alive())

    def background(self) -> dict[str, list[Found]]:
        """Every living receiver of a keyed mode, by key: what a worker may run."""
        found: dict[str, list[Found]] = {}
        for signal in self.signals():
            for entry in self._entries(signal):
                receiver = entry.receiver()
                if entry.info.keyed and receiver is not None:
                    found.setdefault(entry.info.key, []).append(
                        Found(signal, receiver, entry.info)  # type: ignore[arg-type]
                    )
        return found

    def find(self, signal: DjangoSignal, key: str) -> Callable[..., Any] | None:
        """The living receiver that ``key`` names on ``signal``, or None."""
        for entry in self._entries(signal):
            if entry.info.key == key and entry.alive():
                return entry.receiver()  # type: ignore[return-value]
        return None

    def _entries(self, signal: DjangoSignal) -> list[_Entry]:
        with self._lock:
            connections = self._connections(signal)
            return [] if connections is None else connections.entries()

    def _connections(
        self, signal: DjangoSignal, create: bool = False
    ) -> _Connections | None:
        """The signal's entries (made when ``create``); the caller holds the lock."""
        held = _held(signal)
        connections = None if held is None else held.get(self._number)
        if connections is None and create:
            if held is None:
                held = signal._signalbox_connections = {}  # type: ignore[attr-defined]
            number = next(self._numbering)
            connections = held[self._number] = _Connections(signal, number)
            signals = self._signals
            self._signals[number] = _reference(
                connections, lambda _: signals.pop(number, None)
            )
        return connections

    def _drop(self, connections: _Connections) -> None:
        # Breaks the cycle: a signal with nothing recorded holds nothing of ours.
        signal = connections.signal
        held = _held(signal)
        if held is not None and held.get(self._number) is connections:
            del held[self._number]
            if not held:
                del signal._signalbox_connections  # type: ignore[attr-defined]
        self._signals.pop(connections.number, None)


def _held(signal: DjangoSignal) -> dict[int, _Connections] | None:
    """What the registries recorded for ``signal``, by registry, if anything."""
    try:
        return signal._signalbox_connections  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        return None


def _refuse_taken_key(
    entries: list[_Entry], receiver: Callable[..., Any], info: ReceiverInfo
) -> None:
    for entry in entries:
        other = entry.receiver()
        if entry.info.key == info.key and other is not None and other != receiver:
            raise ReceiverError(
                f"The key {info.key!r} already names {other!r} "
                f"({entry.info.location}) on this signal, so it cannot also "
                f"name {receiver!r} ({info.location}). Give one of them "
                f"another dispatch_uid.",
                receiver=receiver,
                key=info.key,
            )


def _weak(obj: object) -> Callable[[], object | None]:
    # What cannot be referenced weakly is not kept: the registry must never
    # keep alive what Django would have let go.
    return _refs.weak(obj) or _refs.DEAD


registry: Final = Registry()
"""The process-wide registry that ``signalbox.receiver`` records into."""
