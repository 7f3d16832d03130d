"""The names signalbox gives receivers, senders and signals.

A receiver's key (``dispatch_uid``, else ``module.qualname``) is what an
outbox row names it by, so a mode that finds receivers again by key refuses
one that another process could not find (:func:`require_findable`). Senders
and signals get short, stable names for rows, logs and ``signalbox list``.
Naming never imports anything, never calls ``repr()`` on a sender, and never
makes a reference that keeps what it names alive.

The public path of these functions is :mod:`signalbox.registry`, which
re-exports them.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from django.dispatch import Signal as DjangoSignal

from signalbox.exceptions import ReceiverError


def receiver_key(receiver: Callable[..., Any], dispatch_uid: Hashable = None) -> str:
    """The receiver's stable key: ``dispatch_uid`` if given, else module.qualname."""
    if dispatch_uid is not None:
        return str(dispatch_uid)
    target = inspect.unwrap(receiver)
    module = getattr(target, "__module__", None) or "<unknown>"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


def require_findable(receiver: Callable[..., Any], run: str, key: str) -> None:
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
