"""What every part of the codec shares: the wire format's tags and limits, and
:class:`_Problem`, raised while encoding or decoding and turned into a
:class:`CodecError` or :class:`DecodeError` by the public functions.
"""

from __future__ import annotations

import reprlib
from typing import Any, Final

FORMAT: Final = 1
TAG: Final = "$sb"
SNAPSHOT_ATTRIBUTE: Final = "_signalbox_from_snapshot"
_MAX_DEPTH: Final = 64
_INT64: Final = 2**63


class _Problem(Exception):
    """Why a value cannot be encoded or decoded, and where (innermost first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.path: list[str] = []

    def at(self, root: str) -> str:
        return root + "".join(reversed(self.path))


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 60, 60
    return short


_SHORT: Final = _short_repr()


def _show(value: object) -> str:
    """A short repr for messages; never raises, even for a 5,000-digit int."""
    try:
        return _SHORT.repr(value)
    except ValueError:
        return f"a {_kind(value)}"


def _kind(value: object) -> str:
    cls = type(value)
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    return module + cls.__qualname__


def _tag(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}
