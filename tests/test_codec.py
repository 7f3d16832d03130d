"""The codec: exact round trips, clear refusals at send time, safe decoding."""

from __future__ import annotations

import ast
import collections
import contextlib
import dataclasses
import enum
import io
import json
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models.signals import post_delete
from django.test import override_settings
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox import CodecError, ConfigurationError, DecodeError, codec
from tests.testapp.models import Invoice, Note, Order

SIGNAL = "shop.signals.order_paid"
RECEIVER = "shop.receivers.send_invoice"


@codec.register
class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


@codec.register
class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


@codec.register
class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@codec.register
@dataclass(frozen=True)
class Line:
    sku: str
    price: Decimal
    qty: int = 1


@codec.register
@dataclass
class Basket:
    lines: list[Line]
    note: str | None = None
    total: Decimal = field(init=False, default=Decimal(0))

    def __post_init__(self) -> None:
        self.total = sum((line.price * line.qty for line in self.lines), Decimal(0))


@codec.register
@dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


class Unregistered(enum.Enum):
    A = 1


@dataclass
class PlainData:
    x: int


class SettingsOnly(enum.Enum):
    ONE = 1


class Pair(NamedTuple):
    a: int
    b: int


def roundtrip(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Encode, store as strict JSON text, read back and decode."""
    text = json.dumps(
        codec.encode(kwargs, signal=SIGNAL, receiver=RECEIVER), allow_nan=False
    )
    return codec.decode(json.loads(text))


def fingerprint(value: object, ordered: bool = True) -> object:
    """A comparable form that tells apart everything a round trip must keep.

    ``ordered=False`` ignores the order of dict keys, which jsonb sorts.
    """
    if isinstance(value, list | tuple):
        return (type(value), [fingerprint(item, ordered) for item in value])
    if isinstance(value, dict):
        items = [(k, fingerprint(v, ordered)) for k, v in value.items()]
        return (type(value), items if ordered else sorted(items))
    if isinstance(value, set | frozenset):
        return (type(value), sorted(repr(fingerprint(item)) for item in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: fingerprint(getattr(value, f.name), ordered)
            for f in dataclasses.fields(value)
        }
        return (type(value), fields)
    if type(value) is int:
        return (int, hex(value))  # repr() refuses ints over 4300 digits
    if isinstance(value, datetime | time):
        return (type(value), repr(value), value.fold, repr(value.utcoffset()))
    return (type(value), repr(value))


def assert_same(before: object, after: object) -> None:
    assert fingerprint(after) == fingerprint(before)


# --- strategies ----------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=12)
offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59),
    max_value=timedelta(hours=23, minutes=59),
)
fixed_zones = st.builds(timezone, offsets) | st.builds(timezone, offsets, any_text)
zones = st.none() | st.timezones() | fixed_zones | st.just(UTC)

hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers()
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400]),
    st.floats(allow_nan=False),
    any_text,
    st.binary(max_size=12),
    st.uuids(),
    st.dates(),
    st.timedeltas(),
    st.datetimes(timezones=zones),
    st.times(timezones=zones),
    st.sampled_from([*Color, *Perm, Perm.R | Perm.X, Perm(0), *Level]),
)
leaves = (
    hashable
    | st.floats()
    | st.decimals()
    | st.sampled_from(
        [
            float("nan"),
            -0.0,
            1e16,
            -1e16,
            1e300,
            5e-324,
            Decimal("-0"),
            Decimal("sNaN"),
            Decimal("1.10E+7"),
            Decimal("-Infinity"),
        ]
    )
)
keys = any_text | st.sampled_from(["$sb", "v", "", "\x00"])
lines = st.builds(Line, sku=any_text, price=st.decimals(), qty=st.integers())
priced = st.builds(
    Line,
    sku=any_text,
    price=st.decimals(allow_nan=False, allow_infinity=False, places=2),
    qty=st.integers(0, 100),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    members = hashable | st.tuples(hashable, hashable)
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=4),
        st.sets(members, max_size=4),
        st.frozensets(members, max_size=4),
        st.builds(
            Basket, lines=st.lists(priced, max_size=3), note=st.none() | any_text
        ),
    )


values = st.recursive(leaves | lines, containers, max_leaves=20)


# --- round trips -------------------------------------------------------------------


@given(st.dictionaries(keys, values, max_size=4))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_every_supported_value_comes_back_exactly(kwargs: dict[str, Any]) -> None:
    assert_same(kwargs, roundtrip(kwargs))


ascii_text = st.text(st.characters(min_codepoint=1, max_codepoint=127))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | ascii_text,
        lambda c: st.lists(c) | st.dictionaries(ascii_text, c),
        max_leaves=20,
    )
)
def test_plain_json_goes_through_untouched(value: Any) -> None:
    assert codec.encode({"x": value}) == {"format": 1, "values": {"x": value}}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "café ☕",
        "a\x00b",
        "\ud800",
        "\U0001f600",
        0,
        -1,
        2**63,
        -(2**63) - 1,
        10**4299,
        True,
        False,
        None,
        0.1,
        -0.0,
        float("inf"),
        float("-inf"),
        1e16,
        1e-300,
        [],
        [1, [2, [3]]],
        {},
        {"a": {"b": 1}},
        (),
        (1, (2,)),
        set(),
        {1, "a"},
        frozenset(),
        frozenset({"name", "paid"}),
        b"",
        b"\x00\xff",
        Decimal("1.10"),
        Decimal("-0E-3"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        UUID("12345678-1234-5678-1234-567812345678"),
        date(2024, 2, 29),
        time(23, 59, 59, 999999),
        timedelta(days=-3, seconds=5),
        datetime(2024, 1, 1, 12, 0),
        datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1), "CET")),
        datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
        time(8, 0, tzinfo=ZoneInfo("Europe/Paris")),
        Color.PAIR,
        Perm.R | Perm.W,
        Level.HIGH,
        Line("sku", Decimal("9.99")),
        Basket([Line("a", Decimal(2), 3)]),
        Color,
        Line,
        Order,
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_type_round_trips(value: object) -> None:
    assert_same({"v": value}, roundtrip({"v": value}))


def test_update_fields_comes_back_a_frozenset() -> None:
    back = roundtrip({"update_fields": frozenset({"paid"})})["update_fields"]
    assert back == frozenset({"paid"})
    assert type(back) is frozenset


def test_zones_come_back_as_the_same_zone() -> None:
    paris = datetime(2024, 7, 1, 9, tzinfo=ZoneInfo("Europe/Paris"))
    back = roundtrip({"at": paris})["at"]
    assert isinstance(back, datetime)
    assert back.tzinfo is ZoneInfo("Europe/Paris")
    assert back.utcoffset() == timedelta(hours=2)
    fixed = roundtrip({"at": paris.astimezone(timezone(timedelta(hours=2)))})["at"]
    assert isinstance(fixed, datetime)
    assert type(fixed.tzinfo) is timezone
    assert fixed.tzinfo == timezone(timedelta(hours=2))
    assert roundtrip({"at": datetime.now(UTC)})["at"].tzinfo is UTC


def test_dataclass_fields_without_init_are_recomputed() -> None:
    back = roundtrip({"basket": Basket([Line("a", Decimal("2.50"), 2)])})["basket"]
    assert isinstance(back, Basket)
    assert back.total == Decimal("5.00")


def test_datetime_subclasses_arrive_as_datetime() -> None:
    class FakeDatetime(datetime):
        pass

    back = roundtrip({"at": FakeDatetime(2024, 1, 1, tzinfo=UTC)})["at"]
    assert type(back) is datetime
    assert back == datetime(2024, 1, 1, tzinfo=UTC)


# --- the wire format ------------------------------------------------------------


def test_plain_values_are_themselves_on_the_wire() -> None:
    kwargs = {"order_id": 123, "note": "x", "update_fields": None}
    assert codec.encode(kwargs) == {"format": 1, "values": kwargs}


def test_a_dict_holding_the_tag_key_is_escaped_and_comes_back() -> None:
    lookalike = {"$sb": "datetime", "v": ["2024-01-01T00:00:00", None, 0]}
    payload = codec.encode({"data": lookalike})
    assert payload["values"]["data"] == {
        "$sb": "dict",
        "v": [["$sb", "datetime"], ["v", ["2024-01-01T00:00:00", None, 0]]],
    }
    assert codec.decode(payload) == {"data": lookalike}


def test_a_keyword_named_like_the_tag_comes_back() -> None:
    assert roundtrip({"$sb": 1, "v": 2}) == {"$sb": 1, "v": 2}


def test_strings_postgres_cannot_store_are_tagged() -> None:
    payload = codec.encode({"s": "a\x00", "k": {"\x00": 1}})
    assert payload["values"]["s"] == {"$sb": "str", "v": "YQA="}
    assert payload["values"]["k"]["$sb"] == "dict"
    assert "\\u0000" not in json.dumps(payload)


@pytest.mark.postgres
@pytest.mark.django_db
@given(st.dictionaries(keys, values, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_payloads_survive_postgres_jsonb(kwargs: dict[str, Any]) -> None:
    payload = json.dumps(codec.encode(kwargs))
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb::text", [payload])
        stored = cursor.fetchone()[0]
    back = codec.decode(json.loads(stored))
    assert fingerprint(back, ordered=False) == fingerprint(kwargs, ordered=False)


# --- refusals at send time ---------------------------------------------------


def _file() -> io.StringIO:
    return io.StringIO("x")


def _generator() -> Iterator[int]:
    yield 1


REFUSED = [
    ("callback", lambda: print, "callback", "builtin_function_or_method"),
    ("fh", _file, "fh", "pass its contents, or its file name"),
    ("rows", lambda: map(str, [1]), "rows", "pass a list"),
    ("thing", object, "thing", "found a object"),
    (
        "lines",
        lambda: [1, 2, Line("x", object())],  # type: ignore[arg-type]
        "lines[2].price",
        "found a object",
    ),
    (
        "lines",
        lambda: {"a": [{"price": {1: 2}}]},
        "lines[<key 0>][0][<key 0>]",
        "dict keys must be str",
    ),
    ("data", lambda: collections.OrderedDict(a=1), "data", "pass dict(value)"),
    ("data", lambda: collections.defaultdict(list), "data", "pass dict(value)"),
    ("data", lambda: Pair(1, 2), "data", "pass tuple(value)"),
    ("data", lambda: mark_safe("<b>"), "data", "pass str(value)"),
    ("data", lambda: gettext_lazy("hello"), "data", "pass str(value)"),
    ("data", lambda: bytearray(b"x"), "data", "pass bytes(value)"),
    ("data", _generator, "data", "pass a list"),
    ("choice", lambda: Unregistered.A, "choice", "signalbox.codec.register"),
    (
        "choice",
        lambda: {"x": (PlainData(1),)},
        "choice[<key 0>][0]",
        "signalbox.codec.register",
    ),
    ("kind", lambda: PlainData, "kind", "signalbox.codec.register"),
    (
        "at",
        lambda: datetime(
            2024,
            1,
            1,
            tzinfo=ZoneInfo.from_file(io.BytesIO(_utc_tzif())),
        ),
        "at",
        "zoneinfo.ZoneInfo made from a key",
    ),
    ("depth", lambda: _nested(100), "depth" + "[0]" * 64, "nested over 64 deep"),
]


def _utc_tzif() -> bytes:
    found = (Path(root, "UTC") for root in zoneinfo.TZPATH)
    return next(path for path in found if path.exists()).read_bytes()


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("name", "make", "argument", "advice"),
    REFUSED,
    ids=[r[2] + ":" + r[3] for r in REFUSED],
)
def test_refusals_name_signal_receiver_argument_and_a_fix(
    name: str, make: Any, argument: str, advice: str
) -> None:
    with pytest.raises(CodecError) as caught:
        codec.encode({"ok": 1, name: make()}, signal=SIGNAL, receiver=RECEIVER)
    error = caught.value
    assert (error.signal, error.receiver, error.argument) == (
        SIGNAL,
        RECEIVER,
        argument,
    )
    assert SIGNAL in str(error)
    assert RECEIVER in str(error)
    assert repr(argument) in str(error)
    assert advice in str(error)


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="a loop"):
        codec.encode({"loop": loop})


def test_a_custom_tzinfo_is_refused() -> None:
    class Custom(timezone.__base__):  # type: ignore[name-defined,misc]
        def utcoffset(self, dt: object) -> timedelta:
            return timedelta(0)

    with pytest.raises(CodecError, match=r"use a zoneinfo\.ZoneInfo"):
        codec.encode({"at": datetime(2024, 1, 1, tzinfo=Custom())})


def test_unsaved_instances_are_refused() -> None:
    with pytest.raises(CodecError, match=r"unsaved testapp\.Order instance; save it"):
        codec.encode({"order": Order(number="A-1")}, signal=SIGNAL, receiver=RECEIVER)


# --- model instances -------------------------------------------------------------


@pytest.mark.django_db
def test_an_instance_is_fetched_fresh(django_assert_num_queries: Any) -> None:
    order = Order.objects.create(number="A-1")
    with django_assert_num_queries(0):
        payload = codec.encode({"instance": order, "created": True})
    Order.objects.filter(pk=order.pk).update(number="A-2")
    with django_assert_num_queries(1):
        back = codec.decode(json.loads(json.dumps(payload)))["instance"]
    assert isinstance(back, Order)
    assert (back.pk, back.number, back._state.db) == (order.pk, "A-2", "default")
    assert not back._state.adding
    assert not codec.from_snapshot(back)


@pytest.mark.django_db
def test_a_deleted_row_comes_back_from_its_snapshot() -> None:
    order = Order.objects.create(number="A-1", paid=True)
    payloads = []

    def capture(sender: object, instance: Order, **kwargs: Any) -> None:
        payloads.append(codec.encode({"instance": instance}))

    post_delete.connect(capture, sender=Order)
    try:
        pk = order.pk
        order.delete()
    finally:
        post_delete.disconnect(capture, sender=Order)
    back = codec.decode(json.loads(json.dumps(payloads[0])))["instance"]
    assert isinstance(back, Order)
    assert (back.pk, back.number, back.paid) == (pk, "A-1", True)
    assert codec.from_snapshot(back)
    assert (back._state.adding, back._state.db) == (False, "default")


@pytest.mark.django_db
def test_a_snapshot_keeps_datetimes_and_every_field_but_the_password() -> None:
    user = User.objects.create_user("ada", "ada@example.com", "pw", is_staff=True)
    fields = [f.attname for f in User._meta.concrete_fields if f.name != "password"]
    before = {name: getattr(user, name) for name in fields}
    payload = codec.encode({"user": user})
    user.delete()
    back = codec.decode(payload)["user"]
    assert isinstance(back, User)
    assert codec.from_snapshot(back)
    assert {name: getattr(back, name) for name in before} == before
    assert back.date_joined.tzinfo is not None
    assert back.get_deferred_fields() == {"password"}


@pytest.mark.django_db
def test_a_value_only_its_field_can_serialise_uses_value_to_string() -> None:
    order = Order.objects.create(number="A-1")
    order.number = mark_safe("A-<1>")
    payload = codec.encode({"order": order})
    assert payload["values"]["order"]["v"]["strings"] == {"number": "A-<1>"}
    Order.objects.all().delete()
    back = codec.decode(payload)["order"]
    assert isinstance(back, Order)
    assert back.number == "A-<1>"


@pytest.mark.django_db
def test_deferred_fields_stay_deferred(django_assert_num_queries: Any) -> None:
    Order.objects.create(number="A-1")
    order = Order.objects.only("pk").get()
    with django_assert_num_queries(0):
        payload = codec.encode({"order": order})
    Order.objects.all().delete()
    back = codec.decode(payload)["order"]
    assert isinstance(back, Order)
    assert back.get_deferred_fields() == {"number", "paid"}


@pytest.mark.django_db(databases=["default", "other"])
def test_an_instance_comes_back_from_its_own_database() -> None:
    order = Order.objects.using("other").create(number="B-1")
    back = roundtrip({"order": order})["order"]
    assert isinstance(back, Order)
    assert (back._state.db, back.number) == ("other", "B-1")


@pytest.mark.django_db
def test_instances_nest_and_other_apps_work() -> None:
    note = Note.objects.create(text="hi")
    kinds = ContentType.objects.get_for_model(Note)
    back = roundtrip({"pair": (note, kinds), "by_id": {"n": [note]}})
    assert back == {"pair": (note, kinds), "by_id": {"n": [note]}}


# --- querysets -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_queryset_travels_as_its_membership(django_assert_num_queries: Any) -> None:
    first, second = (Order.objects.create(number=n, paid=True) for n in "AB")
    Order.objects.create(number="C")
    with django_assert_num_queries(1):
        payload = codec.encode({"orders": Order.objects.filter(paid=True)})
    Order.objects.create(number="D", paid=True)
    back: Any = codec.decode(json.loads(json.dumps(payload)))["orders"]
    assert back.model is Order
    assert sorted(o.pk for o in back) == sorted([first.pk, second.pk])


@pytest.mark.django_db(databases=["default", "other"])
def test_a_queryset_keeps_its_database() -> None:
    order = Order.objects.using("other").create(number="B-1")
    back = roundtrip({"orders": Order.objects.using("other").all()})["orders"]
    assert back.db == "other"
    assert list(back) == [order]


@pytest.mark.django_db
def test_an_empty_queryset_stays_empty() -> None:
    assert list(roundtrip({"orders": Order.objects.none()})["orders"]) == []


@pytest.mark.django_db
def test_values_querysets_are_refused() -> None:
    with pytest.raises(CodecError, match=r"values\(\)/values_list\(\) QuerySet"):
        codec.encode({"rows": Order.objects.values("pk")})


# --- senders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender", [None, "", "shop", "a\x00", Order, User, Color, Line]
)
def test_senders_round_trip(sender: object) -> None:
    data = json.loads(json.dumps(codec.encode_sender(sender)))
    assert codec.decode_sender(data) == sender


def test_model_classes_travel_as_their_label() -> None:
    assert codec.encode_sender(Order) == {"$sb": "modelclass", "v": "testapp.Order"}


@pytest.mark.parametrize("sender", [object(), io.StringIO, PlainData, Order.objects])
def test_other_senders_are_refused(sender: object) -> None:
    with pytest.raises(
        CodecError, match="pass a model class, a type registered"
    ) as caught:
        codec.encode_sender(sender, signal=SIGNAL, receiver=RECEIVER)
    assert (caught.value.argument, caught.value.signal) == ("sender", SIGNAL)


@pytest.mark.parametrize(
    "data",
    [
        1,
        [],
        {},
        {"$sb": "model", "v": {}},
        {"$sb": "modelclass", "v": "nope.Nope"},
        {"$sb": "type", "v": "os.system"},
        {"$sb": "str", "v": "!!"},
    ],
)
def test_bad_senders_do_not_decode(data: object) -> None:
    with pytest.raises(DecodeError):
        codec.decode_sender(data)


# --- registration ------------------------------------------------------------------


def test_register_is_idempotent_and_returns_the_class() -> None:
    assert codec.register(Color) is Color


def test_register_refuses_other_types_and_local_classes() -> None:
    with pytest.raises(ConfigurationError, match="Enum subclass or a dataclass"):
        codec.register(Order)

    class Local(enum.Enum):
        A = 1

    with pytest.raises(ConfigurationError, match="define it at module level"):
        codec.register(Local)


def test_register_refuses_a_second_class_under_the_same_name() -> None:
    impostor = enum.Enum("Color", "RED", module=__name__, qualname="Color")  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="already registered"):
        codec.register(impostor)


def test_types_named_in_settings_travel() -> None:
    with pytest.raises(CodecError):
        codec.encode({"one": SettingsOnly.ONE})
    path = f"{__name__}.SettingsOnly"
    with override_settings(SIGNALBOX={"CODEC_TYPES": [path]}):
        assert roundtrip({"one": SettingsOnly.ONE}) == {"one": SettingsOnly.ONE}
    payload = {"format": 1, "values": {"one": {"$sb": "enum", "v": [path, "ONE"]}}}
    with pytest.raises(DecodeError, match="type that is not registered"):
        codec.decode(payload)


def test_a_bad_settings_path_is_a_configuration_error() -> None:
    with (
        override_settings(SIGNALBOX={"CODEC_TYPES": ["tests.nowhere.Nothing"]}),
        pytest.raises(ConfigurationError, match=r"tests\.nowhere\.Nothing"),
    ):
        codec.encode({"one": Unregistered.A})


# --- decoding malformed payloads -------------------------------------------------


def tagged(tag: str, data: Any) -> dict[str, Any]:
    return {"format": 1, "values": {"x": {"$sb": tag, "v": data}}}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "Not a signalbox payload"),
        ({"format": 2, "values": {}}, "Not a signalbox payload"),
        ({"format": True, "values": {}}, "Not a signalbox payload"),
        ({"format": 1, "values": []}, "not a dict"),
        (tagged("pickle", "gASVAAAA"), "unknown tagged object"),
        (tagged("datetime", ["2024-01-01T00:00:00+01:00", None, 0]), "a datetime"),
        (tagged("datetime", ["2024-01-01", "../../etc/passwd", 0]), "not a time zone"),
        (tagged("datetime", ["2024-01-01", "Mars/Olympus", 0]), "time zone this"),
        (tagged("time", ["10:00", [86_400_000_000, None], 0]), "UTC offset"),
        (tagged("decimal", "1,5"), "not a decimal"),
        (tagged("set", [[1]]), "unhashable"),
        (tagged("enum", ["tests.test_codec.Color", "BLUE"]), "no member"),
        (tagged("enum", ["os.system", "ls"]), "type that is not registered"),
        (tagged("enum", ["tests.test_codec.Line", "A"]), "not of this kind"),
        (tagged("dataclass", ["tests.test_codec.Positive", {"n": -1}]), "refused"),
        (tagged("dataclass", ["tests.test_codec.Line", {"nope": 1}]), "refused"),
        (tagged("modelclass", "testapp"), "a model that the installed app"),
        (tagged("modelclass", "nope.Nope"), "an unknown model"),
        (
            tagged(
                "model",
                {
                    "model": "testapp.Order",
                    "db": "gone",
                    "pk": 1,
                    "fields": {},
                    "strings": {},
                },
            ),
            "alias of a database",
        ),
        (
            tagged(
                "queryset", {"model": "testapp.Order", "db": "default", "pks": [2**70]}
            ),
            "out of range",
        ),
        ({"format": 1, "values": {"x": _nested(80)}}, "nested over 64 deep"),
    ],
)
def test_malformed_payloads_raise_decode_error(payload: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(payload)


BAD_PKS = ["abc", math.inf, {"$sb": "decimal", "v": "Infinity"}, [1]]


@pytest.mark.django_db
@pytest.mark.parametrize("pk", BAD_PKS, ids=repr)
def test_a_bad_primary_key_is_a_decode_error(pk: object) -> None:
    ref = {"model": "testapp.Order", "db": "default"}
    model = tagged("model", {**ref, "pk": pk, "fields": {}, "strings": {}})
    with pytest.raises(DecodeError, match=r"(pk|primary key) "):
        codec.decode(model)
    with pytest.raises(DecodeError, match=r"(pks|primary key) "):
        codec.decode(tagged("queryset", {**ref, "pks": [pk]}))


def test_decode_errors_say_where() -> None:
    # Keyword names come from the code; dict keys are data, shown by position.
    payload = {"format": 1, "values": {"a": [1, {"b": {"$sb": "uuid", "v": "x"}}]}}
    with pytest.raises(DecodeError, match=r"kwargs\['a'\]\[1\]\[<key 0>\]"):
        codec.decode(payload)


# --- messages never quote values ---------------------------------------------------

SECRET = "s3cr3t-codec-sentinel-9f2c"


class Opaque:
    def __repr__(self) -> str:
        return f"Opaque({SECRET!r})"

    __str__ = __repr__


@pytest.mark.parametrize(
    "value",
    [
        Opaque(),
        [1, Opaque()],
        {Opaque(): 1},
        {(SECRET,): 1},
        mark_safe(SECRET),
        collections.OrderedDict(token=SECRET),
    ],
    ids=[
        "object",
        "nested",
        "object key",
        "tuple key",
        "str subclass",
        "dict subclass",
    ],
)
def test_refusals_never_quote_the_value(value: object) -> None:
    # Callers log what send() raises (Django logs a 500 with its traceback), so a
    # refusal must name the argument, never show its content.
    with pytest.raises(CodecError) as caught:
        codec.encode({"token": value}, signal=SIGNAL, receiver=RECEIVER)
    assert (caught.value.argument or "").startswith("token")
    assert SECRET not in str(caught.value)


def secret_in(tag: str, data: Any) -> dict[str, Any]:
    return {"format": 1, "values": {"token": {"$sb": tag, "v": data}}}


@pytest.mark.parametrize(
    "payload",
    [
        {"format": 1, "values": {"token": SECRET}, "extra": SECRET},
        {"format": 1, "values": [SECRET]},
        secret_in(SECRET, 1),
        secret_in("decimal", SECRET),
        secret_in("uuid", SECRET),
        secret_in("date", SECRET),
        secret_in("int", SECRET),
        secret_in("bytes", SECRET),
        secret_in("datetime", [SECRET, None, 0]),
        secret_in("datetime", ["2024-01-01T00:00:00", "Europe/" + SECRET[:6], 0]),
        secret_in("timedelta", [SECRET, 0, 0]),
        secret_in("set", [[SECRET]]),
        secret_in("enum", ["tests.test_codec.Color", SECRET]),
        secret_in("enum", [SECRET, "RED"]),
        secret_in("dataclass", ["tests.test_codec.Line", {"sku": SECRET}]),
        secret_in("modelclass", SECRET),
        secret_in(
            "model",
            {
                "model": "testapp.Order",
                "db": SECRET,
                "pk": 1,
                "fields": {},
                "strings": {},
            },
        ),
        secret_in(
            "queryset", {"model": "testapp.Order", "db": "default", "pks": SECRET}
        ),
    ],
)
def test_decode_errors_never_quote_the_payload(payload: Any) -> None:
    # The worker stores the message as the dead row's error, which is kept
    # when the payload is erased: it must not hold what erasing removed.
    with pytest.raises(DecodeError) as caught:
        codec.decode(payload)
    assert SECRET not in str(caught.value)
    assert SECRET[:6] not in str(caught.value)


@pytest.mark.django_db
@pytest.mark.parametrize("pk", [SECRET, [SECRET], 2**70])
def test_a_bad_primary_key_is_named_by_its_kind(pk: object) -> None:
    ref = {"model": "testapp.Order", "db": "default", "fields": {}, "strings": {}}
    with pytest.raises(DecodeError, match=r"testapp\.Order|primary key") as caught:
        codec.decode(secret_in("model", {**ref, "pk": pk}))
    assert SECRET not in str(caught.value)


def test_decode_errors_name_only_what_this_process_knows() -> None:
    # Any str can stand where a name belongs, a token as well as a type name:
    # a name is shown only when settings or the code vouch for it.
    with pytest.raises(DecodeError) as caught:
        codec.decode(secret_in("enum", ["tests.nowhere.Color", "RED"]))
    assert "nowhere" not in str(caught.value)
    assert "import the module that registers it" in str(caught.value)
    with pytest.raises(DecodeError, match=r"'tests\.test_codec\.Line' is a registered"):
        codec.decode(secret_in("enum", ["tests.test_codec.Line", "RED"]))
    with pytest.raises(DecodeError) as caught:
        codec.decode(secret_in("modelclass", "testapp.Gone"))
    assert "the installed app 'testapp' does not have" in str(caught.value)
    assert "Gone" not in str(caught.value)
    with pytest.raises(DecodeError, match="an unknown model") as caught:
        codec.decode(secret_in("modelclass", "shop.Gone"))
    assert "shop" not in str(caught.value)


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | any_text
INVOICE_FIELDS = [f.attname for f in Invoice._meta.concrete_fields]
TAGS = [*codec._DECODERS, "bogus"]
LABELS = [
    "testapp.Order",
    "testapp.Note",
    "testapp.Invoice",
    "auth.User",
    "nope.Nope",
    "x",
    "a.b.c",
]
PKS = [
    1,
    2,
    -1,
    2**70,
    1.5,
    math.inf,
    "1",
    "x",
    b"1",
    [1],
    (1, 2),
    True,
    {"$sb": "float", "v": "nan"},
    {"$sb": "decimal", "v": "-Infinity"},
    {"$sb": "tuple", "v": [1, 2]},
    {"$sb": "bytes", "v": "MQ=="},
    {"$sb": "uuid", "v": "12345678123456781234567812345678"},
]
NAMES = [
    "tests.test_codec.Color",
    "tests.test_codec.Perm",
    "tests.test_codec.Basket",
    "tests.test_codec.Line",
    "tests.test_codec.Positive",
    "os.system",
]


def garbage(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def tag(name: str, data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.fixed_dictionaries({"$sb": st.just(name), "v": data})

    ref = {
        "model": st.sampled_from(LABELS) | children,
        "db": st.sampled_from(["default", "other", "gone"]) | children,
    }
    names = ["id", "number", "paid", "zz", *INVOICE_FIELDS]
    fields = st.dictionaries(st.sampled_from(names), children | any_text)
    clock = st.tuples(
        any_text | st.sampled_from(["2024-01-01T10:00", "10:00"]),
        st.sampled_from([None, "UTC", "Europe/Paris", "../x"]) | children,
        st.sampled_from([0, 1, 2, True]),
    ).map(list)
    pks = st.sampled_from(PKS)
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(any_text | st.sampled_from(["$sb", "v"]), children, max_size=4),
        tag("x", children).map(lambda d: {**d, "$sb": d["$sb"]}),
        st.builds(lambda t, v: {"$sb": t, "v": v}, st.sampled_from(TAGS), children),
        tag(
            "model",
            st.fixed_dictionaries(
                {
                    **ref,
                    "pk": pks | children,
                    "fields": fields | children,
                    "strings": fields | children,
                }
            ),
        ),
        tag(
            "queryset", st.fixed_dictionaries({**ref, "pks": st.lists(pks | children)})
        ),
        tag("enum", st.tuples(st.sampled_from(NAMES), children).map(list)),
        tag("dataclass", st.tuples(st.sampled_from(NAMES), children).map(list)),
        tag("datetime", clock),
        tag("time", clock),
    )


junk = st.recursive(json_leaves, garbage, max_leaves=25)


@pytest.mark.django_db(databases=["default", "other"])
@given(
    st.fixed_dictionaries(
        {"format": st.sampled_from([1, 1, 1, 2, True]), "values": junk}
    )
    | junk
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_only_ever_raises_decode_error(payload: Any) -> None:
    Order.objects.get_or_create(pk=1, defaults={"number": "A-1"})
    with contextlib.suppress(DecodeError):
        codec.decode(payload)


@pytest.mark.django_db
@given(junk)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_senders_only_ever_raise_decode_error(data: Any) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode_sender(data)


# --- numbers have bounds -----------------------------------------------------------

WITHIN_BOUNDS = [
    10**4299,
    -(10**4299),
    2**14284 - 1,
    Decimal("1E+1000"),
    Decimal("-1E-1000"),
    Decimal("9" * 1000),
    Decimal("0." + "1" * 999),
    Decimal("NaN"),
    Decimal("-Infinity"),
]
BEYOND_BOUNDS = [
    10**4300,
    -(2**14284),
    Decimal("1E+1001"),
    Decimal("1E-1001"),
    Decimal("1e300000"),
    Decimal("9" * 1001),
]


def number_id(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"Decimal {value:.2E}" if value.is_finite() else str(value)
    return f"int of {value.bit_length()} bits"


@pytest.mark.parametrize("value", WITHIN_BOUNDS, ids=number_id)
def test_numbers_within_bounds_travel(value: Any) -> None:
    back = roundtrip({"n": value})["n"]
    assert type(back) is type(value)
    assert str(back) == str(value) if isinstance(value, Decimal) else back == value


@pytest.mark.parametrize("value", BEYOND_BOUNDS, ids=number_id)
def test_numbers_beyond_bounds_are_refused_at_send_and_when_read(value: Any) -> None:
    # What decode() would refuse, send() refuses first, with the bounds.
    with pytest.raises(CodecError, match=r"out of bounds|over 4300 digits"):
        codec.encode({"n": value}, signal=SIGNAL, receiver=RECEIVER)
    text = str(value) if isinstance(value, Decimal) else hex(value)
    tag = "decimal" if isinstance(value, Decimal) else "int"
    with pytest.raises(DecodeError, match=r"out of bounds|too long"):
        codec.decode(tagged(tag, text))


@pytest.mark.parametrize(
    ("tag", "text"),
    [("float", "1" * 33), ("decimal", "1" * 1017), ("int", "f" * 4301)],
)
def test_number_text_too_long_is_refused_before_it_is_converted(
    tag: str, text: str
) -> None:
    with pytest.raises(DecodeError, match="too long"):
        codec.decode(tagged(tag, text))


# --- snapshots the model's fields refuse -------------------------------------------

# Secrets shaped as a name, an e-mail address and neither: what a snapshot
# held must reach neither the row's error nor a log line.
SECRETS = (SECRET, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "bob.s3cr3t@example.com")


def _tag(tag: str, data: Any) -> dict[str, Any]:
    return {"$sb": tag, "v": data}


def _bad_text(*shapes: str) -> st.SearchStrategy[str]:
    """Text that no field of these kinds takes: a secret, alone or after a
    plausible start (``2024-02-30``, ``1,5``)."""
    secrets = st.sampled_from(SECRETS)
    starts = st.sampled_from(["", *shapes])
    return st.builds(lambda start, secret: start + secret, starts, secrets)


_wrong_types = st.sampled_from(
    [[1], {"a": 1}, _tag("tuple", [1]), _tag("set", [1]), _tag("bytes", "eA==")]
)
_huge = st.sampled_from(
    [
        _tag("decimal", "1e300000"),
        _tag("decimal", "9" * 2000),
        _tag("int", hex(10**5000)),
        _tag("float", "1" * 100),
    ]
)
# For each field of Invoice: values, as the codec writes them, that the field
# refuses (wrong types, out of range, malformed), beside those any field does.
BAD_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "reference": _bad_text("12345678-1234-", "urn:uuid:")
    | st.builds(_tag, st.just("uuid"), _bad_text("1234"))
    | st.sampled_from([1.5, -1, _tag("date", "2024-01-01")]),
    "amount": _bad_text("1,5", "12.3.4", "0x1f")
    | st.builds(_tag, st.just("decimal"), _bad_text("1e", "NaN", "--1"))
    | st.sampled_from(
        [_tag("decimal", "NaN"), _tag("decimal", "-Infinity"), _tag("float", "inf")]
    ),
    "issued": _bad_text("2024-02-30", "2024-13-01", "99999-01-01")
    | st.builds(_tag, st.just("date"), _bad_text("2024-02-30", "10000-01-01"))
    | st.sampled_from(
        [_tag("date", "2024-02-30"), _tag("date", "0000-01-01"), 20240101]
    ),
    "sent_at": _bad_text("2024-01-01T25:00", "2024-01-01 10:")
    | st.sampled_from(
        [
            _tag("datetime", ["2024-02-30T10:00:00", None, 0]),
            _tag("datetime", ["2024-01-01T10:00:00", [86_400_000_000, None], 0]),
            _tag("datetime", ["2024-01-01T10:00:00", "Mars/Olympus", 0]),
            _tag("time", ["10:00", None, 0]),
            12,
        ]
    ),
    "due_in": _bad_text("P1Y", "1 day, ")
    | st.sampled_from(
        [_tag("timedelta", [10**10, 0, 0]), _tag("timedelta", [1, 2]), 5]
    ),
    "lines": _bad_text("1.5", "1e3", "0x10")
    | st.sampled_from(
        [_tag("float", "nan"), _tag("float", "inf"), _tag("date", "2024-01-01")]
    ),
    "rate": _bad_text("1,5", "inf inf") | st.sampled_from([_tag("date", "2024-01-01")]),
    "settled": _bad_text("yes", "2") | st.sampled_from([None, 2, 0.5, "maybe"]),
}


@st.composite
def bad_snapshots(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A field of Invoice, where its value goes (fields or strings), and the
    value: one the field refuses, or one beyond the codec's bounds."""
    name = draw(st.sampled_from(sorted(BAD_FIELD_VALUES)))
    value = draw(BAD_FIELD_VALUES[name] | _wrong_types | _huge)
    if type(value) is str and draw(st.booleans()):
        return name, "strings", value
    return name, "fields", value


def background_receiver(sender: object, **kwargs: Any) -> None:
    raise AssertionError("a refused snapshot reached the receiver")


@pytest.mark.django_db
@given(bad_snapshots())
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_a_snapshot_its_fields_refuse_is_a_decode_error_that_quotes_nothing(
    connect: Any, caplog: pytest.LogCaptureFixture, bad: tuple[str, str, Any]
) -> None:
    # The invoice's row is gone, so the worker rebuilds it from its snapshot:
    # whatever the fields or the codec refuse (Django's ValidationError, that
    # quotes the value, among them) is decode_error at once, quoting nothing.
    from signalbox import outbox, registry
    from signalbox.models import Delivery
    from signalbox.worker import Outcome, run_delivery

    name, where, value = bad
    connect(post_delete, background_receiver, sender=Invoice, run="background")
    Delivery.objects.all().delete()
    invoice = Invoice.objects.create(
        reference=UUID(int=7),
        amount=Decimal("12.50"),
        issued=date(2024, 1, 31),
        sent_at=datetime(2024, 1, 31, 9, tzinfo=UTC),
        due_in=timedelta(days=30),
        lines=3,
        rate=0.2,
        customer="carol@example.com",
    )
    invoice.delete()
    [row] = Delivery.objects.all()
    snapshot = row.payload["kwargs"]["values"]["instance"]["v"]
    snapshot["fields"].pop(name)
    snapshot[where][name] = value
    Delivery.objects.filter(pk=row.pk).update(payload=row.payload)
    [claimed] = outbox.claim(
        worker="w",
        queues=[row.queue],
        receivers=[row.receiver],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )
    caplog.clear()
    found = registry.registry.background()
    assert run_delivery(claimed, found, using="default") == Outcome.DEAD
    row.refresh_from_db()
    assert row.reason == "decode_error"
    assert f"kwargs['instance'].{name}" in row.error, row.error
    texts = [row.error, *(record.getMessage() for record in caplog.records)]
    texts += [record.exc_text or "" for record in caplog.records]
    assert not [s for s in SECRETS for text in texts if s in text]


@pytest.mark.django_db
def test_a_snapshot_of_every_field_kind_comes_back_as_it_was() -> None:
    # Its values go through the fields' to_python(), which must keep them.
    invoice = Invoice.objects.create(
        reference=UUID(int=7),
        amount=Decimal("12.50"),
        issued=date(2024, 1, 31),
        sent_at=datetime(2024, 1, 31, 9, tzinfo=UTC),
        due_in=timedelta(days=30),
        lines=3,
        rate=0.2,
        settled=True,
        customer="carol@example.com",
    )
    before = {f.attname: getattr(invoice, f.attname) for f in Invoice._meta.fields}
    payload = json.loads(json.dumps(codec.encode({"invoice": invoice})))
    invoice.delete()
    back = codec.decode(payload)["invoice"]
    assert codec.from_snapshot(back)
    assert {name: getattr(back, name) for name in before} == before


# --- safety ----------------------------------------------------------------------


def codec_sources() -> list[Path]:
    """Every file of the codec package."""
    return sorted(Path(codec.__file__).parent.glob("*.py"))


def test_the_module_never_imports_unsafe_modules_or_evaluates() -> None:
    tree = ast.Module(
        body=[node for f in codec_sources() for node in ast.parse(f.read_text()).body],
        type_ignores=[],
    )
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    unsafe = {"pickle", "marshal", "shelve", "importlib", "dill", "cloudpickle", "yaml"}
    assert {name.split(".")[0] for name in imported} & unsafe == set()
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls & {"eval", "exec", "__import__", "compile", "getattr"} <= {"getattr"}
    # Beside its own modules, the codec needs only these parts of signalbox.
    own = {
        name
        for name in imported
        if name.startswith("signalbox") and not name.startswith("signalbox.codec")
    }
    assert own <= {"signalbox", "signalbox.exceptions", "signalbox.conf"}


def test_import_string_is_used_only_for_the_settings_list() -> None:
    source = "".join(f.read_text() for f in codec_sources())
    assert source.count("import_string(") == 1
    assert "def _imported(paths" in source


def test_floats_that_json_cannot_hold_are_tagged() -> None:
    encoded = codec.encode({"a": math.nan, "b": math.inf, "c": -0.0})["values"]
    assert encoded == {
        "a": {"$sb": "float", "v": "nan"},
        "b": {"$sb": "float", "v": "inf"},
        "c": {"$sb": "float", "v": "-0.0"},
    }
