"""What every part of the codec shares: the wire format's tags and limits, and
:class:`_Problem`, raised while encoding or decoding and turned into a
:class:`CodecError` or :class:`DecodeError` by the public functions.
"""

from __future__ import annotations

import re
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


_SIZED: Final = (str, bytes, list, tuple, dict, set, frozenset)
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _show(value: object) -> str:
    """What ``value`` is, for messages: its type and size, never its content.

    Messages reach exceptions (which callers log), logs, and the outbox's
    ``error`` column, which outlives an erased payload; a value may be a
    password or someone's personal data.
    """
    if value is None:
        return "None"
    kind = _kind(value)
    article = "an" if kind[0] in "aeiou" else "a"
    size = f" of length {len(value)}" if isinstance(value, _SIZED) else ""
    return f"{article} {kind}{size}"


def _name(value: object) -> str:
    """``value`` quoted if it has the shape of a name, else :func:`_show`.

    Type names, model labels, database aliases and enum member names are
    written by ``encode()`` from the code, not from the data, and naming them
    is what makes a message useful (which type this worker does not know).
    """
    if type(value) is str and len(value) <= 200 and _NAME.fullmatch(value):
        return repr(value)
    return _show(value)


def _kind(value: object) -> str:
    cls = type(value)
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    return module + cls.__qualname__


def _tag(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}
