"""How a background receiver's arguments travel: JSON, never pickle.

:func:`encode` runs at ``send()`` time and refuses, with a :class:`CodecError`
naming the signal, receiver and argument, anything it could not bring back
exactly. :func:`decode` runs in the worker and turns anything malformed into a
:class:`DecodeError`; it never imports, evaluates or unpickles. The only types
it builds are those below, models found in Django's app registry, and Enum
and dataclass types passed to :func:`register` or listed in
``SIGNALBOX["CODEC_TYPES"]`` (the one place a path is imported: from settings).

Wire format 1: ``{"format": 1, "values": <the kwargs dict, encoded>}``.
``str``, ``bool``, ``None``, ``int`` within 64 bits and ``float`` strictly
between -1e16 and 1e16 (not -0.0) are themselves; a list is an array; a dict
with ``str`` keys is an object. Anything else is ``{"$sb": tag, "v": data}``:

==========  ===================================================================
str         base64 of UTF-8, for NUL or lone surrogates (jsonb refuses them)
int, float  ``hex(n)`` beyond 64 bits; ``repr(x)`` for nan, inf, -0.0 and
            1e16 up (jsonb would return 1e16 as an int and -0.0 as 0.0)
dict        ``[[key, value], ...]`` when a key is ``"$sb"`` (so user data is
            never read as a tag) or needs the str tag
tuple, set, frozenset: an array; bytes: base64; decimal: ``str(d)`` (exact);
uuid: ``str(u)``; date: ISO 8601
datetime,   ``[wall clock in ISO 8601, tz, fold]``; tz is null, a ZoneInfo
time        key, or ``[offset in microseconds, name or null]`` (a timezone)
timedelta   ``[days, seconds, microseconds]``
enum        ``[type name, member name]``, or ``[type name, value]`` for a Flag
dataclass   ``[type name, {field: value}]``, the fields with ``init=True``
type        a registered type's name, ``module.qualname``
modelclass  ``app_label.ModelName``
model       ``{"model", "db", "pk", "fields", "strings"}``; fields and strings
            are null when the receiver takes no snapshots
queryset    ``{"model", "db", "pks"}``
==========  ===================================================================

A model instance is decoded by fetching its row afresh from the database it
came from. Its loaded concrete fields also travel, by attname (``strings``
holds ``value_to_string()`` for values only the field can serialise), so if
the row is gone, after ``post_delete`` say, the instance is rebuilt from them,
unsaved, and :func:`from_snapshot` is true for it. A snapshot never holds the
password hash of a subclass of ``AbstractBaseUser``, nor the fields
``SIGNALBOX["SNAPSHOT_EXCLUDE"]`` names (such a field of a rebuilt instance is
deferred); ``encode(..., snapshot=False)`` sends no snapshot at all.

A queryset travels as its membership at send time: the pks, decoded as
``filter(pk__in=...)`` on the model's base manager, in the model's default
ordering.

Numbers have bounds, so that reading one costs little whatever a row says:
an int has at most 4300 digits (Python's limit for ``str(int)``), a Decimal
at most 1000 digits, its leading one between 1E-1000 and 1E+1000. :func:`encode`
refuses what lies beyond them, and :func:`decode` reads no text longer than
they allow.

Types are kept exactly, so subclasses (``OrderedDict``, ``defaultdict``,
namedtuples, ``SafeString``, members of an unregistered ``IntEnum``) are
refused rather than arriving as their base; only ``datetime`` and ``date``
subclasses (freezegun's fake clocks) arrive as the plain type. Dict key order
survives SQLite but not PostgreSQL's jsonb, which sorts keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db import models

from signalbox.codec import _encoding
from signalbox.codec._base import (
    FORMAT,
    SNAPSHOT_ATTRIBUTE,
    TAG,
    _is_keyword,
    _kind,
    _Problem,
    _show,
)

# Every tag decode() reads, kept here for the tests that list them.
from signalbox.codec._decoding import _DECODERS as _DECODERS
from signalbox.codec._decoding import _decode, _decode_keywords, _outage
from signalbox.codec._encoding import _CLASS_ADVICE, _encode, _encode_class, _object
from signalbox.codec._registry import register
from signalbox.codec._scalars import _encode_str
from signalbox.exceptions import CodecError, DecodeError

R = TypeVar("R")

__all__ = [
    "FORMAT",
    "SNAPSHOT_ATTRIBUTE",
    "TAG",
    "decode",
    "decode_sender",
    "encode",
    "encode_sender",
    "from_snapshot",
    "register",
]


def encode(
    kwargs: Mapping[str, object],
    *,
    signal: str = "?",
    receiver: str = "?",
    snapshot: bool = True,
) -> dict[str, Any]:
    """Return ``kwargs`` as a dict that ``json.dumps`` takes and :func:`decode` undoes.

    Raises :class:`CodecError`, naming ``signal``, ``receiver`` and the
    argument's path, for any value that could not come back exactly. Queries
    the database only to list a QuerySet's pks. With ``snapshot=False``
    model instances travel without their fields, so one whose row is gone
    cannot be decoded.
    """
    if not snapshot:
        token = _encoding.SNAPSHOTS.set(False)
        try:
            return encode(kwargs, signal=signal, receiver=receiver)
        finally:
            _encoding.SNAPSHOTS.reset(token)
    values: dict[str, Any] = {}
    for index, (name, value) in enumerate(kwargs.items()):
        try:
            if type(name) is not str:
                raise _Problem(f"found a keyword that is {_show(name)}, not a str")
            values[name] = _encode(value, 1)
        except _Problem as problem:
            where = problem.at(name if _is_keyword(name) else f"<keyword {index}>")
            raise CodecError(
                f"Cannot send argument {where!r} of signal {signal} to background "
                f"receiver {receiver}: {problem}.",
                signal=signal,
                receiver=receiver,
                argument=where,
            ) from problem.__cause__
    return {"format": FORMAT, "values": _object(values)}


def encode_sender(sender: object, *, signal: str = "?", receiver: str = "?") -> Any:
    """Return ``sender`` as JSON: None, a str, a model class or a registered type.

    Raises :class:`CodecError` (``argument="sender"``) for anything else.
    """
    if sender is None:
        return None
    if type(sender) is str:
        return _encode_str(sender)
    try:
        if not isinstance(sender, type):
            raise _Problem(f"found a {_kind(sender)}; {_CLASS_ADVICE}")
        return _encode_class(sender)
    except _Problem as problem:
        raise CodecError(
            f"Cannot send the sender of signal {signal} to background receiver "
            f"{receiver}: {problem}.",
            signal=signal,
            receiver=receiver,
            argument="sender",
        ) from None


def decode(payload: Mapping[str, Any]) -> dict[str, object]:
    """Return the keyword arguments :func:`encode` turned into ``payload``.

    Each model instance costs one query; a row that is gone is rebuilt from
    its snapshot, each value through its field's ``to_python()``. Raises
    :class:`DecodeError` for anything :func:`encode` could not have written,
    and for anything that goes wrong while decoding, naming the place and
    never the value. Database errors while fetching (an outage, say)
    propagate unchanged: they are not the payload's fault (a ``DataError``
    is, and is a DecodeError).
    """
    if (
        not isinstance(payload, Mapping)
        or set(payload) != {"format", "values"}
        or type(payload["format"]) is not int
        or payload["format"] != FORMAT
    ):
        raise DecodeError(
            f"Not a signalbox payload of format {FORMAT}: {_show(payload)}"
        )
    return _decoded(_decode_keywords, payload["values"], "kwargs")


def decode_sender(data: Any) -> object:
    """Return the sender :func:`encode_sender` turned into ``data``.

    Raises :class:`DecodeError` for anything but None, a str, a model class
    label or a registered type's name.
    """
    if data is None or type(data) is str:
        return data
    if type(data) is not dict or data.get(TAG) not in ("str", "modelclass", "type"):
        raise DecodeError(f"Cannot decode sender: {_show(data)} is not a sender.")
    return _decoded(lambda value: _decode(value, 0), data, "sender")


def from_snapshot(instance: models.Model) -> bool:
    """Whether :func:`decode` rebuilt ``instance`` because its row was gone.

    Such an instance holds the field values of send time and is not saved.
    """
    return bool(vars(instance).get(SNAPSHOT_ATTRIBUTE, False))


def _decoded(decoder: Callable[[Any], R], data: Any, root: str) -> R:
    """``decoder(data)``; anything it raises but an outage is a DecodeError.

    The error names the place and what was found there, never the value; it
    chains nothing, since the exception it replaces may quote the value.
    """
    try:
        return decoder(data)
    except _Problem as problem:
        message = f"Cannot decode {problem.at(root)}: {problem}."
    except Exception as error:
        # What no decoder turned into a _Problem: a bug here, or code it calls.
        if _outage(error):
            raise
        message = f"Cannot decode {root}: found a {type(error).__name__} decoding it."
    raise DecodeError(message) from None
