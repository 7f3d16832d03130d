"""Stable names for receivers, and what signalbox knows about each one.

Every receiver connected through signalbox is recorded here with a key
(``dispatch_uid`` if given, else ``module.qualname``), the mode it runs in, its
options and where it is defined. Modes that run a receiver outside the
sending process find it again by that key, so a key must name exactly one
function: the registry refuses receivers it could not find again (lambdas,
closures, bound methods of instances) and keys that already name another
function on the same signal. Nothing here ever imports a path it is given.
"""

from __future__ import annotations

import inspect
import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from django.dispatch import Signal as DjangoSignal

from signalbox import _refs
from signalbox._travel import Travel
from signalbox.exceptions import ReceiverError
from signalbox.policy import Policy

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


def receiver_key(receiver: Callable[..., Any], dispatch_uid: Hashable = None) -> str:
    """The receiver's stable key: ``dispatch_uid`` if given, else module.qualname."""
    if dispatch_uid is not None:
        return str(dispatch_uid)
    target = inspect.unwrap(receiver)
    module = getattr(target, "__module__", None) or "<unknown>"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


def require_findable(receiver: Callable[..., Any], run: Run, key: str) -> None:
    """Refuse a receiver that could not be found again by its key.

    A worker in another process looks a receiver up by key among the
    module-level functions its own imports connected. Lambdas and closures
    have no such name, and a bound method needs the very instance it was bound
    to; each gets an error saying what to write instead.
    """
    target = inspect.unwrap(receiver)
    owner = getattr(target, "__self__", None)
    qualname = getattr(target, "__qualname__", "")
    why: str | None = None
    if owner is not None and not isinstance(owner, type):
        why = (
            "it is a method bound to one instance, which another process "
            "cannot find; use a module-level function or a classmethod"
        )
    elif not inspect.isfunction(target) and not inspect.ismethod(target):
        why = (
            "it is a callable object, which another process cannot find; "
            "use a module-level function"
        )
    elif target.__name__ == "<lambda>":
        why = "it is a lambda, which has no name; use a def at module level"
    elif "<locals>" in qualname or getattr(target, "__closure__", None):
        why = (
            "it is defined inside a function, so another process cannot "
            "import it; move it to module level"
        )
    if why is not None:
        raise ReceiverError(
            f"run={run!r} cannot use {key!r}: {why}.",
            receiver=receiver,
            key=key,
        )


def source_location(receiver: Callable[..., Any]) -> str:
    """Where the receiver is defined, as ``file:line`` (``?`` when unknown)."""
    target: Any = inspect.unwrap(receiver)
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is None:
        call = type(target).__call__ if callable(target) else None
        code = getattr(call, "__code__", None)
    if code is None:
        return "?"
    return f"{code.co_filename}:{code.co_firstlineno}"


def describe_sender(sender: object) -> str | None:
    """A short, stable name for a sender filter: ``app_label.Model`` for models."""
    if sender is None:
        return None
    if isinstance(sender, str):
        return sender
    meta = getattr(sender, "_meta", None)
    if isinstance(sender, type) and meta is not None:
        return str(meta.label)
    if isinstance(sender, type):
        return f"{sender.__module__}.{sender.__qualname__}"
    # Never repr(): a sender's repr may fail, or query the database.
    return f"<{type(sender).__module__}.{type(sender).__qualname__} object>"


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


_names: weakref.WeakKeyDictionary[DjangoSignal, str] = weakref.WeakKeyDictionary()
_indexed_modules = [0]


def signal_name(signal: DjangoSignal) -> str:
    """The dotted path a signal is importable as.

    For example ``django.db.models.signals.post_save``. A
    :class:`signalbox.Signal` knows the module it was created in; any other
    signal is looked for in the loaded modules, preferring a module called
    ``signals``, then the one imported first (the defining module is imported
    before the modules that re-export it). A signal that no module exposes is
    named by its ``repr``.
    """
    name = _names.get(signal)
    if name is None:
        name = _name_in(getattr(signal, "defined_in", None), signal)
    if name is None and len(sys.modules) != _indexed_modules[0]:
        # Look again only when modules were imported since the last look, so
        # an unnamed signal does not cost a scan on every warning.
        _indexed_modules[0] = len(sys.modules)
        _index_loaded_modules()
        name = _names.get(signal)
    return name or repr(signal)


def _name_in(module_name: object, signal: DjangoSignal) -> str | None:
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    for attr, value in list(getattr(module, "__dict__", {}).items()):
        if value is signal:
            _names[signal] = f"{module_name}.{attr}"
            return _names[signal]
    return None


def _index_loaded_modules() -> None:
    best: dict[int, tuple[tuple[int, int], DjangoSignal, str]] = {}
    for position, (module_name, module) in enumerate(list(sys.modules.items())):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        in_signals = 0 if module_name.rpartition(".")[2] == "signals" else 1
        for attr, value in list(namespace.items()):
            # type(), not isinstance(): a lazy object (staticfiles_storage, say)
            # answers isinstance() by building what it wraps.
            if issubclass(type(value), DjangoSignal) and not attr.startswith("_"):
                rank = (in_signals, position)
                if id(value) not in best or rank < best[id(value)][0]:
                    best[id(value)] = (rank, value, f"{module_name}.{attr}")
    for _, signal, name in best.values():
        _names.setdefault(signal, name)
