"""Encoding one value, recursively: containers, registered types, classes, model
instances and querysets, handing the leaves to :mod:`._scalars`.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import math
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.query import ModelIterable
from django.utils.functional import Promise

from signalbox import conf
from signalbox.codec._base import (
    _INT64,
    _MAX_DEPTH,
    TAG,
    _key_place,
    _kind,
    _Problem,
    _show,
    _tag,
)
from signalbox.codec._registry import _registered_name
from signalbox.codec._scalars import (
    _b64,
    _encode_clock,
    _encode_decimal,
    _encode_int,
    _encode_str,
    _storable,
)

_FLOAT_LIMIT: Final = 1e16
_CLASS_ADVICE: Final = (
    "pass a model class, a type registered with signalbox.codec.register, or a str"
)
_PLAIN_BASES: Final = (dict, list, tuple, set, frozenset, str, int, float, bytes)

SNAPSHOTS: Final = ContextVar("signalbox_snapshots", default=True)
"""False while encoding for a receiver connected with ``snapshot=False``."""


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
    for index, (key, item) in enumerate(value.items()):
        if type(key) is not str:
            raise _Problem(
                f"found a dict with a key that is {_show(key)}; dict keys must "
                f"be str, so convert them or pass a list of pairs"
            )
        try:
            out[key] = _encode(item, depth + 1)
        except _Problem as problem:
            problem.path.append(_key_place(index))  # a key is data: never shown
            raise
    return _object(out)


def _object(out: dict[str, Any]) -> Any:
    """``out`` as a JSON object, or as pairs if a key would be misread or refused."""
    if TAG in out or not all(map(_storable, out)):
        return _tag("dict", [[_encode_str(key), item] for key, item in out.items()])
    return out


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
    fields, strings = (
        _snapshot(instance, depth + 1) if SNAPSHOTS.get() else (None, None)
    )
    reference = {"model": label, "db": instance._state.db or DEFAULT_DB_ALIAS}
    pk = _encode(instance.pk, depth + 1)
    return _tag("model", {**reference, "pk": pk, "fields": fields, "strings": strings})


def _snapshot(instance: models.Model, depth: int) -> tuple[dict[str, Any], ...]:
    """The loaded concrete fields, by attname: codec values, or field strings.

    Never a password hash, nor a field ``SIGNALBOX["SNAPSHOT_EXCLUDE"]`` names.
    """
    # A deferred field is one missing from __dict__ (get_deferred_fields()
    # asks the same, in a loop of its own).
    loaded = instance.__dict__
    kept = _unsnapshotted(type(instance))
    fields: dict[str, Any] = {}
    strings: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.attname in loaded and field.attname not in kept:
            try:
                fields[field.attname] = _encode(
                    field.value_from_object(instance), depth
                )
            except _Problem:
                # A custom field's value: the field serialises it, as for dumpdata.
                strings[field.attname] = _field_text(instance, field)
    return fields, strings


_withheld: tuple[object, dict[type[models.Model], frozenset[str]]] = (None, {})


def _unsnapshotted(model: type[models.Model]) -> frozenset[str]:
    """The attnames of ``model`` that no snapshot may hold, worked out once per
    model and settings."""
    global _withheld
    settings = conf.get()
    if _withheld[0] is not settings:
        _withheld = (settings, {})
    known = _withheld[1].get(model)
    if known is None:
        known = _withheld[1][model] = _withheld_fields(model, settings)
    return known


def _withheld_fields(
    model: type[models.Model], settings: conf.Settings
) -> frozenset[str]:
    # Imported here: it defines a model, which needs the app registry ready.
    from django.contrib.auth.base_user import AbstractBaseUser

    # A model's entry covers its proxies and subclasses: they carry its fields.
    names = {
        name
        for base in model.__mro__
        if issubclass(base, models.Model) and "_meta" in vars(base)
        for name in settings.snapshot_exclude.get(base._meta.label_lower, ())
    }
    if issubclass(model, AbstractBaseUser):
        # The hash logs a user in wherever it is cracked; rows and the admin
        # that shows them are the wrong place for it.
        names.add(AbstractBaseUser._meta.get_field("password").name)
    return frozenset(
        field.attname
        for field in model._meta.concrete_fields
        if field.name in names or field.attname in names
    )


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
    int: lambda value, depth: _encode_int(value),
    float: lambda value, depth: _tag("float", repr(value)),
    list: _items,
    dict: _encode_dict,
    tuple: lambda value, depth: _tag("tuple", _items(value, depth)),
    set: lambda value, depth: _tag("set", _items(value, depth)),
    frozenset: lambda value, depth: _tag("frozenset", _items(value, depth)),
    bytes: lambda value, depth: _tag("bytes", _b64(value)),
    Decimal: lambda value, depth: _encode_decimal(value),
    UUID: lambda value, depth: _tag("uuid", str(value)),
    date: lambda value, depth: _tag("date", value.isoformat()),
    datetime: lambda value, depth: _encode_clock("datetime", value),
    time: lambda value, depth: _encode_clock("time", value),
    timedelta: lambda v, depth: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
}
