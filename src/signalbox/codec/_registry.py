"""The Enum and dataclass types that may travel: those passed to
:func:`register`, and those ``SIGNALBOX["CODEC_TYPES"]`` names.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.utils.module_loading import import_string

from signalbox import conf
from signalbox.codec._base import _Problem
from signalbox.exceptions import ConfigurationError

T = TypeVar("T", bound=type)

_registered: dict[str, type] = {}
_configured: tuple[tuple[str, ...], dict[str, type]] = ((), {})


def register(cls: T) -> T:
    """Let ``cls``, an Enum subclass or a dataclass type, travel; returns ``cls``.

    It travels under ``f"{cls.__module__}.{cls.__qualname__}"``, so the worker
    must import the module that registers it. Raises
    :class:`ConfigurationError` for other types, classes defined inside a
    function, and a name already registered for another class.
    """
    name = _registrable_name(cls)
    if _registered.setdefault(name, cls) is not cls:
        raise ConfigurationError(
            f"{name} is already registered for {_registered[name]!r}; "
            f"two classes cannot travel under one name."
        )
    return cls


def _registrable_name(cls: object) -> str:
    if not isinstance(cls, type) or not (
        issubclass(cls, enum.Enum) or dataclasses.is_dataclass(cls)
    ):
        raise ConfigurationError(
            f"signalbox.codec.register() takes an Enum subclass or a dataclass "
            f"type, not {cls!r}."
        )
    if "<locals>" in cls.__qualname__:
        raise ConfigurationError(
            f"{cls!r} is defined inside a function, so a worker cannot register "
            f"it too; define it at module level."
        )
    return f"{cls.__module__}.{cls.__qualname__}"


def _configured_types() -> dict[str, type]:
    """The types ``SIGNALBOX["CODEC_TYPES"]`` names, imported on first use."""
    global _configured
    paths = conf.get().codec_types
    if _configured[0] != paths:
        _configured = (paths, {_registrable_name(c): c for c in _imported(paths)})
    return _configured[1]


def _imported(paths: Iterable[str]) -> Iterator[type]:
    for path in paths:
        try:
            yield import_string(path)
        except ImportError as error:
            raise ConfigurationError(
                f'SIGNALBOX["CODEC_TYPES"] names {path!r}, which cannot be '
                f"imported: {error}"
            ) from error


def _registered_name(cls: type) -> str | None:
    name = f"{cls.__module__}.{cls.__qualname__}"
    known = _registered.get(name) or _configured_types().get(name)
    return name if known is cls else None


def _registered_type(name: object, kind: Callable[[type], bool]) -> Any:
    found = None
    if type(name) is str:
        found = _registered.get(name) or _configured_types().get(name)
    if found is None:
        # Not quoted: any str could stand here, a token as well as a type name.
        raise _Problem(
            "found a type that is not registered in this process; the worker "
            "must import the module that registers it, or list it in "
            'SIGNALBOX["CODEC_TYPES"]'
        )
    if not kind(found):
        raise _Problem(f"{name!r} is a registered type, but not of this kind")
    return found
