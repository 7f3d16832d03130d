"""Bad input in the payload: fuzzed rows, and arguments that cannot travel."""

from __future__ import annotations

import enum
import json
import os
import socket
import threading
from collections import OrderedDict, defaultdict, namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from signalbox import codec, outbox
from signalbox.exceptions import CodecError, DecodeError
from tests.reliability import harness, receivers, tripwires
from tests.reliability.harness import FULL, Workers, size, sql
from tests.testapp.models import Order

# -- fuzzed payloads ----------------------------------------------------------

FUZZ_KEY = "tests.reliability.receivers.fuzz_target"
NAMES = [
    "os.system",
    "subprocess.Popen",
    "collections.OrderedDict",
    "tests.reliability.trap.boom",
    "builtins.eval",
    "pickle.loads",
    "sbfuzz.module.Thing",
    "__import__('sbfuzz').run()",
    "testapp.Order",
    "testapp.Note",
    "auth.User",
    "signalbox.Delivery",
    "sbfuzz.Model",
    "default",
    "sbfuzz",
]
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
_keys = _text | st.sampled_from(
    ["$sb", "v", "model", "db", "pk", "fields", "strings", "pks", "format", "values"]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
    | st.sampled_from(NAMES)
)
_tags = st.sampled_from([*codec._DECODERS, "pickle", "eval", "import", "sbfuzz", ""])
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.builds(lambda tag, v: {"$sb": tag, "v": v}, _tags, inner)
        | st.builds(
            lambda model, db, pk, fields, strings: {
                "$sb": "model",
                "v": {
                    "model": model,
                    "db": db,
                    "pk": pk,
                    "fields": fields,
                    "strings": strings,
                },
            },
            st.sampled_from(NAMES),
            st.sampled_from(["default", "sbfuzz", "", 1]),
            inner,
            inner,
            inner,
        )
    ),
    max_leaves=20,
)
PAYLOADS = st.one_of(
    _json,
    st.builds(
        lambda sender, values: {
            "sender": sender,
            "kwargs": {"format": 1, "values": values},
        },
        _json,
        _json,
    ),
    st.builds(
        lambda values: {
            "sender": None,
            "kwargs": {"format": 1, "values": {"x": values}},
        },
        _json,
    ),
    st.builds(lambda kwargs: {"sender": None, "kwargs": kwargs}, _json),
)


def _generated(count: int) -> list[Any]:
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=not FULL,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(PAYLOADS)
    def collect(payload: Any) -> None:
        found.append(payload)

    collect()
    return found


def _nested(depth: int) -> str:
    return (
        '{"sender": null, "kwargs": {"format": 1, "values": {"x": '
        + ("[" * depth + "]" * depth)
        + "}}}"
    )


def _expected(payload: Any) -> str:
    """What run_delivery should make of ``payload``: completed, or dead."""
    try:
        codec.decode(payload["kwargs"])
        codec.decode_sender(payload["sender"])
    except (DecodeError, KeyError, TypeError):
        return "dead"
    except Exception as error:  # what the worker would not catch either
        return f"dead ({type(error).__name__} escapes decode)"
    return "completed"


def test_fuzzed_malformed_payloads(pg: Workers, tmp_path: Path) -> None:
    """Hypothesis-made payloads: no crash, each dead with decode_error or completed."""
    wires = tmp_path / "tripwires"
    pg.env.update(SIGNALBOX_REL_TRIPWIRES=str(wires))
    payloads = _generated(size(ci=200, full=3000))
    outbox.enqueue(
        [
            outbox.NewDelivery(
                signal="sbfuzz", receiver=FUZZ_KEY, payload=p, max_attempts=2
            )
            for p in payloads
        ],
        using="default",
    )
    for depth in (40, 1100, 5000):  # JSON too deep for Python's own parser
        sql(
            "default",
            "INSERT INTO signalbox_delivery (signal, receiver, queue, priority, state, "
            "payload, attempt, max_attempts, enqueued_at, scheduled_at, leased_by, "
            "reason, error) VALUES ('sbfuzz', %s, 'default', 0, 'available', "
            "%s::jsonb, 0, 2, now(), now(), '', '', '')",
            [FUZZ_KEY, _nested(depth)],
        )
    expected = {}
    for pk, payload in sql(
        "default", "SELECT id, payload::text FROM signalbox_delivery ORDER BY id"
    ):
        try:
            expected[pk] = _expected(None if payload is None else json.loads(payload))
        except RecursionError:
            expected[pk] = "dead"
    workers = [pg.start(concurrency=4) for _ in range(2)]
    harness.wait_drained("default", 180)
    outcomes = dict(
        sql(
            "default",
            "SELECT id, CASE WHEN state = 'dead' AND reason = 'decode_error' THEN "
            "'dead' WHEN state = 'completed' THEN state "
            "ELSE state || ' ' || reason END FROM signalbox_delivery",
        )
    )
    wrong = {
        pk: (want, outcomes[pk])
        for pk, want in expected.items()
        if outcomes[pk] != want
    }
    events = tripwires.events(wires)
    unrecorded = pg.logs().count("could not record its outcome")
    harness.check(
        "default",
        "bad input: hypothesis-fuzzed malformed payloads",
        figures={
            "payloads": len(expected),
            "decodable": sum(v == "completed" for v in expected.values()),
            "dead_decode_error": sum(v == "dead" for v in outcomes.values()),
            "other_outcomes": len(wrong),
            "outcomes_unrecorded": unrecorded,
            "worker_crashes": len(pg.unexpected_exits()),
            "forbidden_calls": len(events),
        },
    )
    assert not pg.unexpected_exits()
    assert all(worker.alive() for worker in workers)
    assert events == []
    assert not wrong, sorted(wrong.items())[:10]


# -- arguments that cannot travel ---------------------------------------------


class Colour(enum.IntEnum):
    RED = 1


@dataclass
class Unregistered:
    value: int


Point = namedtuple("Point", "x y")


def _catalogue() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return {
        "a lambda": lambda: None,
        "an object()": object(),
        "an open file": open(os.devnull),
        "a socket": socket.socket(),
        "a generator": (n for n in range(3)),
        "an OrderedDict": OrderedDict(a=1),
        "a defaultdict": defaultdict(list),
        "a namedtuple": Point(1, 2),
        "a SafeString": mark_safe("<b>"),
        "a lazy translation": gettext_lazy("hello"),
        "an unsaved model instance": Order(number="unsaved"),
        "a dict with int keys": {1: "one"},
        "a list that contains itself": loop,
        "a complex number": 1j,
        "a bytearray": bytearray(b"x"),
        "a memoryview": memoryview(b"x"),
        "a range": range(3),
        "a lock": threading.Lock(),
        "a Path": Path("/"),
        "an unregistered IntEnum member": Colour.RED,
        "an unregistered dataclass": Unregistered(1),
        "a bad value deep inside": {"a": [1, {"b": object()}]},
    }


@pytest.mark.parametrize("alias", ["default", "sqlite"])
def test_unencodable_kwargs_are_refused_at_send_time(
    alias: str, request: pytest.FixtureRequest
) -> None:
    """Each refused with a CodecError naming it, nothing written, transaction usable."""
    request.getfixturevalue("pg" if alias == "default" else "lite")
    catalogue = _catalogue()
    refused, usable, named = 0, 0, 0
    try:
        for n, (what, value) in enumerate(catalogue.items()):
            for signal_name in ("effect_sent", "fanout_sent"):
                number = f"c{n}{signal_name[0]}"
                with transaction.atomic(using=alias):
                    Order.objects.using(alias).create(number=number)
                    try:
                        getattr(receivers, signal_name).send(
                            sender=None, send_id=-1, using=alias, bad=value
                        )
                    except CodecError as error:
                        refused += 1
                        named += str(error.argument).startswith("bad")
                    else:
                        pytest.fail(f"{what} was accepted")
                    usable += Order.objects.using(alias).filter(number=number).exists()
    finally:
        catalogue["an open file"].close()
        catalogue["a socket"].close()
    written = harness.scalar(alias, "SELECT count(*) FROM signalbox_delivery")
    committed = Order.objects.using(alias).count()
    connections[alias].close()
    cases = len(catalogue) * 2
    harness.check(
        alias,
        "bad input: unencodable kwargs refused at send time",
        figures={
            "cases": cases,
            "refused": refused,
            "naming_the_argument": named,
            "rows_written": written,
            "transactions_usable_after": usable,
            "transactions_committed": committed,
        },
    )
    assert (refused, named, usable, committed, written) == (
        cases,
        cases,
        cases,
        cases,
        0,
    )
