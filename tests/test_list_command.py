"""``manage.py signalbox list``: every signal, every receiver, how each runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver as django_receiver

import signalbox
from tests.testapp import lazy
from tests.testapp.models import Order

listed_signal = signalbox.Signal()


def audit(sender: object, **kwargs: Any) -> None:
    pass


def refresh(sender: object, **kwargs: Any) -> None:
    pass


def legacy(sender: object, **kwargs: Any) -> None:
    pass


async def push(sender: object, **kwargs: Any) -> None:
    pass


@pytest.fixture
def connected() -> Iterator[None]:
    signalbox.connect(listed_signal, audit)
    signalbox.connect(listed_signal, push, dispatch_uid="ws.push")
    signalbox.connect(post_save, refresh, sender=Order, run="on_commit")
    django_receiver(pre_delete, sender=Order)(legacy)
    yield
    listed_signal.disconnect(audit)
    listed_signal.disconnect(push, dispatch_uid="ws.push")
    post_save.disconnect(refresh, sender=Order)
    pre_delete.disconnect(legacy, sender=Order)


def listing(*args: str) -> str:
    out = StringIO()
    call_command("signalbox", "list", *args, stdout=out)
    return out.getvalue()


def by_signal() -> dict[str, list[dict[str, Any]]]:
    data = json.loads(listing("--json"))
    return {entry["signal"]: entry["receivers"] for entry in data}


@pytest.mark.usefixtures("connected")
class TestList:
    def test_json_lists_signalbox_signals_with_keys_and_modes(self) -> None:
        receivers = by_signal()[f"{__name__}.listed_signal"]
        assert [(r["key"], r["run"], r["sender"]) for r in receivers] == [
            (f"{__name__}.audit", "inline", None),
            ("ws.push", "inline", None),
        ]
        assert all(r["connected_by"] == "signalbox" for r in receivers)
        assert receivers[0]["location"].endswith(
            f"test_list_command.py:{audit.__code__.co_firstlineno}"
        )

    def test_django_signals_show_the_mode_and_sender(self) -> None:
        saved = by_signal()["django.db.models.signals.post_save"]
        assert {
            "key": f"{__name__}.refresh",
            "run": "on_commit",
            "sender": "testapp.Order",
            "connected_by": "signalbox",
        }.items() <= next(r for r in saved if r["key"].endswith("refresh")).items()

    def test_plain_django_receivers_are_listed_as_inline(self) -> None:
        deleted = by_signal()["django.db.models.signals.pre_delete"]
        entry = next(r for r in deleted if r["key"] == f"{__name__}.legacy")
        assert entry["run"] == "inline"
        assert entry["sender"] == "testapp.Order"
        assert entry["connected_by"] == "django"

    def test_django_framework_receivers_are_there_too(self) -> None:
        finished = by_signal()["django.core.signals.request_finished"]
        assert "django.db.close_old_connections" in {r["key"] for r in finished}

    def test_disconnected_receivers_disappear(self) -> None:
        post_save.disconnect(refresh, sender=Order)
        saved = by_signal().get("django.db.models.signals.post_save", [])
        assert f"{__name__}.refresh" not in {r["key"] for r in saved}

    def test_coroutine_receivers_are_marked(self) -> None:
        receivers = by_signal()[f"{__name__}.listed_signal"]
        assert [(r["key"], r["coroutine"]) for r in receivers] == [
            (f"{__name__}.audit", False),
            ("ws.push", True),
        ]
        lines = listing().splitlines()
        assert any(line.split()[:3] == ["inline", "async", "ws.push"] for line in lines)
        assert any(
            line.split()[:2] == ["inline", f"{__name__}.audit"] for line in lines
        )

    def test_table(self) -> None:
        text = listing()
        assert f"{__name__}.listed_signal" in text
        assert "on_commit" in text
        assert "sender=testapp.Order" in text
        assert "receivers on" in text


def test_listing_leaves_lazy_objects_unbuilt() -> None:
    listing()
    signalbox.registry.signal_name(signalbox.Signal())
    assert lazy.built == []


def test_a_subcommand_is_required() -> None:
    with pytest.raises(CommandError, match="subcommand"):
        call_command("signalbox")
