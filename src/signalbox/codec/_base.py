"""What every part of the codec shares: the wire format's tags and limits, and
:class:`_Problem`, raised while encoding or decoding and turned into a
:class:`CodecError` or :class:`DecodeError` by the public functions.
"""

from __future__ import annotations

from typing import Any, Final

FORMAT: Final = 1
TAG: Final = "$sb"
SNAPSHOT_ATTRIBUTE: Final = "_signalbox_from_snapshot"
_MAX_DEPTH: Final = 64
_INT64: Final = 2**63
# What a number may be, so that converting it costs little whatever a row
# says: int(Decimal("1e300000")), which Django's IntegerField runs on a pk,
# holds the GIL for seconds. 4300 digits is Python's own default limit on
# int(str) and str(int) (sys.int_info.default_max_str_digits).
_MAX_DIGITS: Final = 4300
_MAX_INT_BITS: Final = 14_284  # 2**14284 has 4300 decimal digits
_MAX_FLOAT_TEXT: Final = 32  # repr(float) writes at most 24 characters


class _Problem(Exception):
    """Why a value cannot be encoded or decoded, and where (innermost first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.path: list[str] = []

    def at(self, root: str) -> str:
        return root + "".join(reversed(self.path))


_SIZED: Final = (str, bytes, list, tuple, dict, set, frozenset)


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


def _key_place(index: int) -> str:
    """Where the ``index``-th entry of a dict is, for a path in a message.

    Never the key itself: keys are data as much as values are (e-mail
    addresses, tokens), and a path reaches the same places a value must not.
    """
    return f"[<key {index}>]"


def _is_keyword(name: object) -> bool:
    """Whether ``name`` may be shown as the name of a keyword argument.

    Keyword names are the signal's argument names, written in the code that
    sends it, and naming them is what makes a message useful; a key that is
    not an identifier came from data (``send(**some_dict)``), and is not shown.
    """
    return type(name) is str and name.isascii() and name.isidentifier()


def _kind(value: object) -> str:
    cls = type(value)
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    return module + cls.__qualname__


def _tag(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}
