"""Decoding one value, recursively: containers, the tags ``encode()`` writes,
registered types, model classes, model instances (fetched, or rebuilt from
their snapshot) and querysets, reading the leaves with :mod:`._scalars`.

Whatever Django or a registered type raises while a value is built (a
field's ``to_python()`` refusing a snapshot's value, say) becomes a
:class:`_Problem` naming the place and the exception's type, never its
message, which may quote the value. Only a database that fails (other than
a :class:`~django.db.DataError`, which the data caused) propagates.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Container
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import UUID

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist
from django.db import DataError, connections, models
from django.db import Error as DatabaseFailure

from signalbox.codec._base import (
    _INT64,
    _MAX_DEPTH,
    SNAPSHOT_ATTRIBUTE,
    TAG,
    _is_keyword,
    _key_place,
    _kind,
    _Problem,
    _show,
)
from signalbox.codec._registry import _registered_type
from signalbox.codec._scalars import (
    _decode_clock,
    _decode_decimal,
    _decode_float,
    _decode_int,
    _decode_str,
    _decode_timedelta,
    _out_of_bounds,
    _parsed,
    _parts,
    _text,
    _unb64,
)

R = TypeVar("R")
Place = Callable[[int, Any], str]
"""Where the entry at an index, with a key, is in its dict, for a message."""


def _outage(error: BaseException) -> bool:
    """Whether ``error`` is the database failing, not the payload being wrong."""
    return isinstance(error, DatabaseFailure) and not isinstance(error, DataError)


def _refused(error: Exception, what: str) -> _Problem:
    """``error``, raised by code the codec calls, as a _Problem saying ``what``.

    Names the exception's type only: its message may quote the value (Django's
    ValidationError does), and messages outlive erased payloads.
    """
    if _outage(error):
        raise error
    return _Problem(f"{what} ({type(error).__name__})")


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


def _entry_place(index: int, key: Any) -> str:
    return _key_place(index)


def _decode_dict(
    data: Any, depth: int, pairs: bool = False, place: Place = _entry_place
) -> dict[str, Any]:
    out = {}
    entries = _list(data) if pairs else _mapping(data).items()
    for index, entry in enumerate(entries):
        key: Any = None
        try:
            key, value = _parts(entry, 2) if pairs else entry
            key = _text(key)
            out[key] = _decode(value, depth + 1)
        except _Problem as problem:
            problem.path.append(place(index, key))
            raise
    return out


def _decode_keywords(data: Any) -> dict[str, Any]:
    """The keyword arguments: a JSON object, or pairs when a name needed it."""
    if type(data) is dict and TAG in data:
        if data[TAG] != "dict" or set(data) != {TAG, "v"}:
            raise _Problem("found a tagged value, not a dict")
        return _decode_dict(data["v"], 0, pairs=True, place=_keyword)
    if type(data) is not dict:
        raise _Problem(f"found a {_kind(data)}, not a dict")
    return _decode_dict(data, 0, place=_keyword)


def _keyword(index: int, key: Any) -> str:
    return f"[{key!r}]" if _is_keyword(key) else f"[<keyword {index}>]"


def _named(names: Container[str]) -> Place:
    """Places that name the keys in ``names`` (fields, from the code) as ``.name``."""

    def place(index: int, key: Any) -> str:
        return f".{key}" if type(key) is str and key in names else _key_place(index)

    return place


def _decode_tagged(value: dict[str, Any], depth: int) -> Any:
    tag = value[TAG]
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None or len(value) != 2 or "v" not in value:
        raise _Problem(f"found an unknown tagged object ({_show(value)})")
    return decoder(value["v"], depth)


def _list(data: Any) -> list[Any]:
    if type(data) is not list:
        raise _Problem(f"found a {_kind(data)} where a list belongs")
    return data


def _mapping(data: Any) -> dict[Any, Any]:
    if type(data) is not dict:
        raise _Problem(f"found a {_kind(data)} where an object belongs")
    return data


def _record(data: Any, keys: set[str]) -> dict[str, Any]:
    if type(data) is not dict or set(data) != keys:
        raise _Problem(f"found {_show(data)} where an object of {sorted(keys)} belongs")
    return data


def _decode_enum(data: Any, depth: int) -> enum.Enum:
    name, member = _parts(data, 2)
    cls = _registered_type(name, lambda t: issubclass(t, enum.Enum))
    try:
        if issubclass(cls, enum.Flag) and type(member) is int:
            return cls(member)  # type: ignore[no-any-return]
        return cls[_text(member)]  # type: ignore[no-any-return]
    except _Problem:
        raise
    except Exception as error:
        # A member name is data too (any str would pass for one): its kind only.
        what = f"{cls.__qualname__} has no member for {_show(member)}"
        raise _refused(error, what) from None


def _decode_dataclass(data: Any, depth: int) -> object:
    name, fields = _parts(data, 2)
    cls = _registered_type(name, dataclasses.is_dataclass)
    known = {field.name for field in dataclasses.fields(cls)}
    values = _decode_dict(fields, depth, place=_named(known))
    try:
        return cls(**values)
    except Exception as error:
        # The class's own __init__ and __post_init__ decide what they accept;
        # whatever they raise, these fields do not make one.
        given = sorted(known.intersection(values))
        unknown = len(values) - len(given)
        others = f" and {unknown} unknown" if unknown else ""
        raise _refused(error, f"{name} refused the fields {given}{others}") from None


def _hashable(build: Callable[[list[Any]], R]) -> Callable[[Any, int], R]:
    def decode(data: Any, depth: int) -> R:
        items = _decode_items(data, depth)
        try:
            return build(items)
        except TypeError as error:
            raise _Problem(f"found unhashable members in {_show(items)}") from error

    return decode


def _model(label: Any) -> type[models.Model]:
    text = _text(label)
    try:
        return apps.get_model(text)
    except (LookupError, ValueError):
        raise _Problem(f"found {_unknown_model(text)}") from None


def _unknown_model(label: str) -> str:
    """What a label that names no installed model is, without quoting it.

    An installed app's label comes from settings, so it can be named: a model
    that was renamed or removed since the send shows as a model of its app.
    """
    app_label = label.partition(".")[0]
    if app_label in apps.app_configs:
        return f"a model that the installed app {app_label!r} does not have"
    return "an unknown model (its app is not in INSTALLED_APPS)"


def _alias(alias: Any) -> str:
    if type(alias) is not str or alias not in connections:
        raise _Problem(
            f"found {_show(alias)} where the alias of a database in "
            f"settings.DATABASES belongs"
        )
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
        pass
    except Exception as error:
        what = f"found {_show(pk)}, which is not a pk of {model._meta.label}"
        raise _refused(error, what) from None
    return _rebuild(model, alias, pk, ref, depth + 1)


def _rebuild(
    model: type[models.Model], alias: str, pk: Any, ref: dict[str, Any], depth: int
) -> models.Model:
    """The instance its snapshot describes: each value as its field makes it.

    A value goes through the field's ``to_python()``, as ``loaddata`` does,
    so a snapshot that the field would not take is a _Problem here rather
    than a wrong value in the receiver's hands.
    """
    if ref["fields"] is None and ref["strings"] is None:
        raise _Problem(
            f"the {model._meta.label} row is gone, and it travelled without a "
            f"snapshot (its receiver was connected with snapshot=False)"
        )
    fields = {f.attname: f for f in model._meta.concrete_fields}
    values = {}
    decoded = _decode_dict(ref["fields"], depth, place=_named(fields))
    for name, value in decoded.items():
        if name in fields:
            values[name] = _field_value(fields[name], value)
    for name, text in _mapping(ref["strings"]).items():
        if name in fields:
            values[name] = _field_value(fields[name], text, _text)
    if model._meta.pk is not None and model._meta.pk.attname in fields:
        values[model._meta.pk.attname] = pk
    names = [name for name in fields if name in values]
    try:
        instance = model.from_db(alias, names, [values[name] for name in names])
    except Exception as error:
        what = f"the snapshot does not make a {model._meta.label}"
        raise _refused(error, what) from None
    vars(instance)[SNAPSHOT_ATTRIBUTE] = True
    return instance


def _field_value(
    field: models.Field[Any, Any], value: Any, read: Callable[[Any], Any] = lambda v: v
) -> Any:
    """``read(value)`` as ``field`` holds it: what its ``to_python()`` makes of it."""
    try:
        converted = field.to_python(read(value))
        if isinstance(converted, Decimal) and _out_of_bounds(converted):
            raise _Problem(f"found {_show(value)}, which makes a Decimal out of bounds")
    except _Problem as problem:
        problem.path.append(f".{field.attname}")
        raise
    except Exception as error:
        what = f"found {_show(value)}, which {type(field).__name__} refuses"
        refusal = _refused(error, what)
        refusal.path.append(f".{field.attname}")
        raise refusal from None
    return converted


def _decode_queryset(data: Any, depth: int) -> models.QuerySet[Any]:
    ref = _record(data, {"model", "db", "pks"})
    model, alias = _model(ref["model"]), _alias(ref["db"])
    pks = [_pk(item, depth) for item in _list(ref["pks"])]
    try:
        return model._base_manager.using(alias).filter(pk__in=pks)
    except Exception as error:
        what = f"found {_show(pks)}, which are not pks of {model._meta.label}"
        raise _refused(error, what) from None


_DECODERS: Final[dict[str, Callable[[Any, int], Any]]] = {
    "str": _decode_str,
    "int": _decode_int,
    "float": _decode_float,
    "dict": lambda data, depth: _decode_dict(data, depth, pairs=True),
    "tuple": _hashable(tuple),
    "set": _hashable(set),
    "frozenset": _hashable(frozenset),
    "bytes": lambda data, depth: _parsed(_unb64, data, "base64"),
    "decimal": _decode_decimal,
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
