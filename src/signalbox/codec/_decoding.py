"""Decoding one value, recursively: containers, the tags ``encode()`` writes,
registered types, model classes, model instances (fetched, or rebuilt from
their snapshot) and querysets, reading the leaves with :mod:`._scalars`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import UUID

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import connections, models

from signalbox.codec._base import (
    _INT64,
    _MAX_DEPTH,
    SNAPSHOT_ATTRIBUTE,
    TAG,
    _kind,
    _name,
    _Problem,
    _show,
)
from signalbox.codec._registry import _registered_type
from signalbox.codec._scalars import (
    _decode_clock,
    _decode_str,
    _decode_timedelta,
    _parsed,
    _parts,
    _text,
    _unb64,
)

R = TypeVar("R")


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
    except (KeyError, ValueError) as error:
        raise _Problem(f"{cls.__qualname__} has no member {_name(member)}") from error


def _decode_dataclass(data: Any, depth: int) -> object:
    name, fields = _parts(data, 2)
    cls = _registered_type(name, dataclasses.is_dataclass)
    values = _decode_dict(fields, depth)
    try:
        return cls(**values)
    except Exception as error:
        # The class's own __init__ and __post_init__ decide what they accept;
        # whatever they raise, these fields do not make one.
        raise _Problem(f"{name} refused the fields {sorted(values)}") from error


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
        raise _Problem(f"{_name(label)} is not an installed model") from error


def _alias(alias: Any) -> str:
    if type(alias) is not str or alias not in connections:
        raise _Problem(f"{_name(alias)} is not a database in settings.DATABASES")
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
    if ref["fields"] is None and ref["strings"] is None:
        raise _Problem(
            f"the {model._meta.label} row is gone, and it travelled without a "
            f"snapshot (its receiver was connected with snapshot=False)"
        )
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
