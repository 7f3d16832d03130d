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
model       ``{"model", "db", "pk", "fields", "strings"}``
queryset    ``{"model", "db", "pks"}``
==========  ===================================================================

A model instance is decoded by fetching its row afresh from the database it
came from. Its loaded concrete fields also travel, by attname (``strings``
holds ``value_to_string()`` for values only the field can serialise), so if
the row is gone, after ``post_delete`` say, the instance is rebuilt from them,
unsaved, and :func:`from_snapshot` is true for it. A queryset travels as its
membership at send time: the pks, decoded as ``filter(pk__in=...)`` on the
model's base manager, in the model's default ordering.

Types are kept exactly, so subclasses (``OrderedDict``, ``defaultdict``,
namedtuples, ``SafeString``, members of an unregistered ``IntEnum``) are
refused rather than arriving as their base; only ``datetime`` and ``date``
subclasses (freezegun's fake clocks) arrive as the plain type. Dict key order
survives SQLite but not PostgreSQL's jsonb, which sorts keys.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import io
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.query import ModelIterable
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from signalbox import conf
from signalbox.exceptions import CodecError, ConfigurationError, DecodeError

T = TypeVar("T", bound=type)
R = TypeVar("R")
Clock = TypeVar("Clock", datetime, time)

FORMAT: Final = 1
TAG: Final = "$sb"
SNAPSHOT_ATTRIBUTE: Final = "_signalbox_from_snapshot"
_MAX_DEPTH: Final = 64
_INT64: Final = 2**63
_FLOAT_LIMIT: Final = 1e16
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
# IANA names only: zoneinfo may look a key up as a tzdata.zoneinfo package.
_ZONE_KEY: Final = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_CLASS_ADVICE: Final = (
    "pass a model class, a type registered with signalbox.codec.register, or a str"
)
_PLAIN_BASES: Final = (dict, list, tuple, set, frozenset, str, int, float, bytes)


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


# --- registered types -----------------------------------------------------------

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
    if found is None or not kind(found):
        raise _Problem(f"{_show(name)} is not a registered type of this kind")
    return found


# --- encoding ---------------------------------------------------------------------


def encode(
    kwargs: Mapping[str, object], *, signal: str = "?", receiver: str = "?"
) -> dict[str, Any]:
    """Return ``kwargs`` as a dict that ``json.dumps`` takes and :func:`decode` undoes.

    Raises :class:`CodecError`, naming ``signal``, ``receiver`` and the
    argument's path, for any value that could not come back exactly. Queries
    the database only to list a QuerySet's pks.
    """
    values: dict[str, Any] = {}
    for name, value in kwargs.items():
        try:
            if type(name) is not str:
                raise _Problem(f"found the non-str keyword {_show(name)}")
            values[name] = _encode(value, 1)
        except _Problem as problem:
            where = problem.at(str(name))
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


def _encode(value: Any, depth: int) -> Any:
    kind = type(value)
    # The fast path: JSON-native values that every database stores unchanged.
    if kind is str:
        if value.isascii() and "\x00" not in value:
            return value
    elif kind is int:
        if -_INT64 <= value < _INT64:
            return value
    elif value is None or kind is bool:
        return value
    elif kind is float:
        finite = -_FLOAT_LIMIT < value < _FLOAT_LIMIT
        if finite and (value or math.copysign(1.0, value) > 0):
            return value
    if depth > _MAX_DEPTH:
        raise _Problem(f"found values nested over {_MAX_DEPTH} deep (a loop?)")
    encoder = _ENCODERS.get(kind)
    return encoder(value, depth) if encoder else _encode_other(value, depth)


def _encode_other(value: object, depth: int) -> Any:
    if isinstance(value, models.Model):
        return _encode_model(value, depth)
    if isinstance(value, models.QuerySet):
        return _encode_queryset(value, depth)
    if isinstance(value, type):
        return _encode_class(value)
    named = _registered_name(type(value))
    if named and isinstance(value, enum.Flag):
        return _tag("enum", [named, value.value])
    if named and isinstance(value, enum.Enum):
        return _tag("enum", [named, _encode_str(value.name)])
    if named and dataclasses.is_dataclass(value):
        return _tag("dataclass", [named, _dataclass_fields(value, depth)])
    if isinstance(value, datetime):
        return _encode_clock("datetime", value)
    if isinstance(value, date):
        return _tag("date", value.isoformat())
    raise _Problem(f"found a {_kind(value)}; {_advice(value)}")


def _advice(value: object) -> str:
    """What to pass instead of ``value``."""
    if isinstance(value, enum.Enum) or dataclasses.is_dataclass(value):
        return "register its type with signalbox.codec.register"
    if isinstance(value, Promise):
        return "pass str(value)"
    if isinstance(value, bytearray | memoryview):
        return "pass bytes(value)"
    base = next((b for b in _PLAIN_BASES if isinstance(value, b)), None)
    if base is not None:
        name = base.__name__
        return f"it would arrive as a plain {name}; pass {name}(value) if that will do"
    if isinstance(value, io.IOBase):
        return "pass its contents, or its file name"
    if isinstance(value, Iterator):
        return "pass a list"
    return (
        "pass its primary key or the plain values the receiver needs, or make "
        "it an Enum or dataclass registered with signalbox.codec.register"
    )


def _tag(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}


def _storable(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def _encode_str(text: str) -> Any:
    if _storable(text):
        return text
    return _tag("str", _b64(text.encode("utf-8", "surrogatepass")))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _items(values: Iterable[object], depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        try:
            out.append(_encode(item, depth + 1))
        except _Problem as problem:
            problem.path.append(f"[{index}]")
            raise
    return out


def _encode_dict(value: dict[object, object], depth: int) -> Any:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _Problem(
                f"found a dict with the {_kind(key)} key {_show(key)}; dict keys "
                f"must be str, so convert them or pass a list of pairs"
            )
        try:
            out[key] = _encode(item, depth + 1)
        except _Problem as problem:
            problem.path.append(f"[{key!r}]")
            raise
    return _object(out)


def _object(out: dict[str, Any]) -> Any:
    """``out`` as a JSON object, or as pairs if a key would be misread or refused."""
    if TAG in out or not all(map(_storable, out)):
        return _tag("dict", [[_encode_str(key), item] for key, item in out.items()])
    return out


def _encode_clock(tag: str, value: datetime | time) -> Any:
    wall = value.replace(tzinfo=None).isoformat()
    return _tag(tag, [wall, _encode_tz(value.tzinfo), value.fold])


def _encode_tz(tz: tzinfo | None) -> Any:
    if tz is None:
        return None
    if type(tz) is ZoneInfo and tz.key is not None:
        return tz.key
    if type(tz) is timezone:
        offset, name = tz.utcoffset(None), tz.tzname(None)
        default = name == timezone(offset).tzname(None)
        return [
            offset // timedelta(microseconds=1),
            None if default else _encode_str(name),
        ]
    raise _Problem(
        f"found a time zone of type {_kind(tz)}; use a zoneinfo.ZoneInfo made "
        f"from a key, or a datetime.timezone"
    )


def _dataclass_fields(value: Any, depth: int) -> dict[str, Any]:
    out = {}
    for field in dataclasses.fields(value):
        if field.init:
            try:
                out[field.name] = _encode(getattr(value, field.name), depth + 1)
            except _Problem as problem:
                problem.path.append(f".{field.name}")
                raise
    return out


def _encode_class(cls: type) -> Any:
    if issubclass(cls, models.Model) and not cls._meta.abstract:
        return _tag("modelclass", cls._meta.label)
    named = _registered_name(cls)
    if named is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
        raise _Problem(f"found the class {name}; {_CLASS_ADVICE}")
    return _tag("type", named)


def _encode_model(instance: models.Model, depth: int) -> Any:
    label = instance._meta.label
    if instance.pk is None or instance._state.adding:
        raise _Problem(
            f"found an unsaved {label} instance; save it first, or pass the "
            f"values the receiver needs"
        )
    fields, strings = _snapshot(instance, depth + 1)
    reference = {"model": label, "db": instance._state.db or DEFAULT_DB_ALIAS}
    pk = _encode(instance.pk, depth + 1)
    return _tag("model", {**reference, "pk": pk, "fields": fields, "strings": strings})


def _snapshot(instance: models.Model, depth: int) -> tuple[dict[str, Any], ...]:
    """The loaded concrete fields, by attname: codec values, or field strings."""
    deferred = instance.get_deferred_fields()
    fields: dict[str, Any] = {}
    strings: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.attname not in deferred:
            try:
                fields[field.attname] = _encode(
                    field.value_from_object(instance), depth
                )
            except _Problem:
                # A custom field's value: the field serialises it, as for dumpdata.
                strings[field.attname] = _field_text(instance, field)
    return fields, strings


def _field_text(instance: models.Model, field: models.Field[Any, Any]) -> Any:
    text = field.value_to_string(instance)
    if not isinstance(text, str):
        problem = _Problem(
            f"found a value its field cannot serialise: {type(field).__name__}"
            f".value_to_string() returned a {_kind(text)}"
        )
        problem.path.append(f".{field.attname}")
        raise problem
    return _encode_str(str.__str__(text))  # a plain str, even from a SafeString


def _encode_queryset(queryset: models.QuerySet[Any], depth: int) -> Any:
    # values() and values_list() rows would come back as model instances.
    if queryset._iterable_class is not ModelIterable:
        raise _Problem(
            "found a values()/values_list() QuerySet; pass list(queryset), or "
            "a QuerySet of model instances"
        )
    pks = _items(queryset.values_list("pk", flat=True), depth)
    return _tag(
        "queryset", {"model": queryset.model._meta.label, "db": queryset.db, "pks": pks}
    )


_ENCODERS: Final[dict[type, Callable[[Any, int], Any]]] = {
    str: lambda value, depth: _encode_str(value),
    int: lambda value, depth: _tag("int", hex(value)),
    float: lambda value, depth: _tag("float", repr(value)),
    list: _items,
    dict: _encode_dict,
    tuple: lambda value, depth: _tag("tuple", _items(value, depth)),
    set: lambda value, depth: _tag("set", _items(value, depth)),
    frozenset: lambda value, depth: _tag("frozenset", _items(value, depth)),
    bytes: lambda value, depth: _tag("bytes", _b64(value)),
    Decimal: lambda value, depth: _tag("decimal", str(value)),
    UUID: lambda value, depth: _tag("uuid", str(value)),
    date: lambda value, depth: _tag("date", value.isoformat()),
    datetime: lambda value, depth: _encode_clock("datetime", value),
    time: lambda value, depth: _encode_clock("time", value),
    timedelta: lambda v, depth: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
}


# --- decoding ---------------------------------------------------------------------


def decode(payload: Mapping[str, Any]) -> dict[str, object]:
    """Return the keyword arguments :func:`encode` turned into ``payload``.

    Each model instance costs one query; a row that is gone is rebuilt from
    its snapshot. Raises :class:`DecodeError` for anything :func:`encode`
    could not have written. Database errors while fetching (an outage, say)
    propagate unchanged: they are not the payload's fault.
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
    values = _decoded(payload["values"], "kwargs")
    if type(values) is not dict:
        raise DecodeError(f"Cannot decode kwargs: found a {_kind(values)}, not a dict.")
    return values


def decode_sender(data: Any) -> object:
    """Return the sender :func:`encode_sender` turned into ``data``.

    Raises :class:`DecodeError` for anything but None, a str, a model class
    label or a registered type's name.
    """
    if data is None or type(data) is str:
        return data
    if type(data) is not dict or data.get(TAG) not in ("str", "modelclass", "type"):
        raise DecodeError(f"Cannot decode sender: {_show(data)} is not a sender.")
    return _decoded(data, "sender")


def from_snapshot(instance: models.Model) -> bool:
    """Whether :func:`decode` rebuilt ``instance`` because its row was gone.

    Such an instance holds the field values of send time and is not saved.
    """
    return bool(vars(instance).get(SNAPSHOT_ATTRIBUTE, False))


def _decoded(data: Any, root: str) -> Any:
    try:
        return _decode(data, 0)
    except _Problem as problem:
        message = f"Cannot decode {problem.at(root)}: {problem}."
        raise DecodeError(message) from problem.__cause__


def _decode(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if depth > _MAX_DEPTH:
        raise _Problem(f"found values nested over {_MAX_DEPTH} deep")
    if kind is list:
        return _decode_items(value, depth)
    if kind is dict:
        return (
            _decode_tagged(value, depth) if TAG in value else _decode_dict(value, depth)
        )
    raise _Problem(f"found a {_kind(value)}, which is not a JSON value")


def _decode_items(data: Any, depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(_list(data)):
        try:
            out.append(_decode(item, depth + 1))
        except _Problem as problem:
            problem.path.append(f"[{index}]")
            raise
    return out


def _decode_dict(data: Any, depth: int, pairs: bool = False) -> dict[str, Any]:
    out = {}
    items = enumerate(_list(data)) if pairs else _mapping(data).items()
    for where, item in items:
        try:
            key, value = _parts(item, 2) if pairs else (where, item)
            out[_text(key)] = _decode(value, depth + 1)
        except _Problem as problem:
            problem.path.append(f"[{where!r}]")
            raise
    return out


def _decode_tagged(value: dict[str, Any], depth: int) -> Any:
    tag = value[TAG]
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None or len(value) != 2 or "v" not in value:
        raise _Problem(f"found the unknown tagged object {_show(value)}")
    return decoder(value["v"], depth)


def _text(data: Any) -> str:
    """A str :func:`_encode_str` wrote: itself, or tagged."""
    if type(data) is str:
        return data
    if type(data) is dict and data.get(TAG) == "str" and len(data) == 2:
        return _decode_str(data.get("v"), 0)
    raise _Problem(f"found a {_kind(data)} where a str belongs")


def _list(data: Any) -> list[Any]:
    if type(data) is not list:
        raise _Problem(f"found a {_kind(data)} where a list belongs")
    return data


def _mapping(data: Any) -> dict[Any, Any]:
    if type(data) is not dict:
        raise _Problem(f"found a {_kind(data)} where an object belongs")
    return data


def _parts(data: Any, count: int) -> list[Any]:
    if type(data) is not list or len(data) != count:
        raise _Problem(f"found {_show(data)} where a list of {count} belongs")
    return data


def _record(data: Any, keys: set[str]) -> dict[str, Any]:
    if type(data) is not dict or set(data) != keys:
        raise _Problem(f"found {_show(data)} where an object of {sorted(keys)} belongs")
    return data


def _parsed(parse: Callable[[str], R], data: Any, what: str) -> R:
    """``parse(data)`` for a str ``data``; any complaint becomes a _Problem."""
    if type(data) is not str:
        raise _Problem(f"found a {_kind(data)} where {what} belongs")
    try:
        return parse(data)
    except (ArithmeticError, ValueError) as error:
        raise _Problem(f"{_show(data)} is not {what}") from error


def _unb64(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


def _decode_str(data: Any, depth: int) -> str:
    raw = _parsed(_unb64, data, "base64")
    return _parsed(lambda _: raw.decode("utf-8", "surrogatepass"), data, "UTF-8")


def _decode_timedelta(data: Any, depth: int) -> timedelta:
    parts = _parts(data, 3)
    if any(type(part) is not int for part in parts):
        raise _Problem(
            f"found {_show(data)} where [days, seconds, microseconds] belongs"
        )
    try:
        return timedelta(*parts)
    except OverflowError as error:
        raise _Problem(f"{_show(data)} is not a timedelta") from error


def _decode_clock(cls: type[Clock]) -> Callable[[Any, int], Clock]:
    def decode(data: Any, depth: int) -> Clock:
        wall, tz, fold = _parts(data, 3)
        clock = _parsed(cls.fromisoformat, wall, f"an ISO {cls.__name__}")
        if clock.tzinfo is not None or type(fold) is not int or fold not in (0, 1):
            raise _Problem(f"found {_show(data)} where a {cls.__name__} belongs")
        return clock.replace(tzinfo=_decode_tz(tz), fold=fold)

    return decode


def _decode_tz(data: Any) -> tzinfo | None:
    if data is None:
        return None
    if type(data) is str:
        return _zone(data)
    offset, name = _parts(data, 2)
    if type(offset) is not int or abs(offset) >= 86_400_000_000:
        raise _Problem(f"found {_show(data)} where a UTC offset belongs")
    if name is None:
        return timezone(timedelta(microseconds=offset))
    return timezone(timedelta(microseconds=offset), _text(name))


def _zone(key: str) -> ZoneInfo:
    if not _ZONE_KEY.fullmatch(key):
        raise _Problem(f"{_show(key)} is not a time zone name")
    try:
        return ZoneInfo(key)
    except (KeyError, ValueError, OSError) as error:
        raise _Problem(f"{key!r} is not a time zone this system knows") from error


def _decode_enum(data: Any, depth: int) -> enum.Enum:
    name, member = _parts(data, 2)
    cls = _registered_type(name, lambda t: issubclass(t, enum.Enum))
    try:
        if issubclass(cls, enum.Flag) and type(member) is int:
            return cls(member)  # type: ignore[no-any-return]
        return cls[_text(member)]  # type: ignore[no-any-return]
    except (KeyError, ValueError) as error:
        raise _Problem(f"{cls.__qualname__} has no member {_show(member)}") from error


def _decode_dataclass(data: Any, depth: int) -> object:
    name, fields = _parts(data, 2)
    cls = _registered_type(name, dataclasses.is_dataclass)
    values = _decode_dict(fields, depth)
    try:
        return cls(**values)
    except Exception as error:
        # The class's own __init__ and __post_init__ decide what they accept;
        # whatever they raise, these fields do not make one.
        raise _Problem(f"{name} refused the fields {_show(values)}") from error


def _hashable(build: Callable[[list[Any]], R]) -> Callable[[Any, int], R]:
    def decode(data: Any, depth: int) -> R:
        items = _decode_items(data, depth)
        try:
            return build(items)
        except TypeError as error:
            raise _Problem(f"found unhashable members in {_show(items)}") from error

    return decode


def _model(label: Any) -> type[models.Model]:
    try:
        return apps.get_model(_text(label))
    except (LookupError, ValueError) as error:
        raise _Problem(f"{_show(label)} is not an installed model") from error


def _alias(alias: Any) -> str:
    if type(alias) is not str or alias not in connections:
        raise _Problem(f"{_show(alias)} is not a database in settings.DATABASES")
    return alias


def _pk(data: Any, depth: int) -> Any:
    pk = _decode(data, depth + 1)
    if pk is None or isinstance(pk, list | dict | set | frozenset | models.Model):
        raise _Problem(f"found {_show(pk)} where a primary key belongs")
    if type(pk) is int and not -_INT64 <= pk < _INT64:
        raise _Problem(f"{_show(pk)} is out of range for a primary key")
    return pk


def _decode_model(data: Any, depth: int) -> models.Model:
    ref = _record(data, {"model", "db", "pk", "fields", "strings"})
    model, alias, pk = _model(ref["model"]), _alias(ref["db"]), _pk(ref["pk"], depth)
    try:
        return model._base_manager.using(alias).get(pk=pk)
    except ObjectDoesNotExist:
        return _rebuild(model, alias, pk, ref, depth + 1)
    except (ArithmeticError, TypeError, ValueError, ValidationError) as error:
        raise _Problem(f"{_show(pk)} is not a pk of {model._meta.label}") from error


def _rebuild(
    model: type[models.Model], alias: str, pk: Any, ref: dict[str, Any], depth: int
) -> models.Model:
    fields = {f.attname: f for f in model._meta.concrete_fields}
    values = {
        k: v for k, v in _decode_dict(ref["fields"], depth).items() if k in fields
    }
    for name, text in _mapping(ref["strings"]).items():
        if name in fields:
            values[name] = _parsed(fields[name].to_python, _text(text), "field text")
    if model._meta.pk is not None and model._meta.pk.attname in fields:
        values[model._meta.pk.attname] = pk
    names = [name for name in fields if name in values]
    try:
        instance = model.from_db(alias, names, [values[name] for name in names])
    except (TypeError, ValueError, ValidationError) as error:
        raise _Problem(f"the snapshot does not make a {model._meta.label}") from error
    vars(instance)[SNAPSHOT_ATTRIBUTE] = True
    return instance


def _decode_queryset(data: Any, depth: int) -> models.QuerySet[Any]:
    ref = _record(data, {"model", "db", "pks"})
    model, alias = _model(ref["model"]), _alias(ref["db"])
    pks = [_pk(item, depth) for item in _list(ref["pks"])]
    try:
        return model._base_manager.using(alias).filter(pk__in=pks)
    except (ArithmeticError, TypeError, ValueError, ValidationError) as error:
        raise _Problem(f"{_show(pks)} are not pks of {model._meta.label}") from error


_DECODERS: Final[dict[str, Callable[[Any, int], Any]]] = {
    "str": _decode_str,
    "int": lambda data, depth: _parsed(lambda t: int(t, 16), data, "a hex integer"),
    "float": lambda data, depth: _parsed(float, data, "a float"),
    "dict": lambda data, depth: _decode_dict(data, depth, pairs=True),
    "tuple": _hashable(tuple),
    "set": _hashable(set),
    "frozenset": _hashable(frozenset),
    "bytes": lambda data, depth: _parsed(_unb64, data, "base64"),
    "decimal": lambda data, depth: _parsed(Decimal, data, "a decimal"),
    "uuid": lambda data, depth: _parsed(UUID, data, "a UUID"),
    "date": lambda data, depth: _parsed(date.fromisoformat, data, "an ISO date"),
    "datetime": _decode_clock(datetime),
    "time": _decode_clock(time),
    "timedelta": _decode_timedelta,
    "enum": _decode_enum,
    "dataclass": _decode_dataclass,
    "type": lambda data, depth: _registered_type(_text(data), lambda t: True),
    "modelclass": lambda data, depth: _model(data),
    "model": _decode_model,
    "queryset": _decode_queryset,
}
