"""Unit tests for receiver keys, the registry's refusals and mode validation."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import signalbox
from signalbox import ReceiverError, registry
from signalbox._modes import MODES
from signalbox.registry import ReceiverInfo, Registry


def module_level(sender: object, **kwargs: Any) -> None:
    pass


def other_module_level(sender: object, **kwargs: Any) -> None:
    pass


class Handlers:
    def method(self, sender: object, **kwargs: Any) -> None:
        pass

    @classmethod
    def on_class(cls, sender: object, **kwargs: Any) -> None:
        pass

    @staticmethod
    def static(sender: object, **kwargs: Any) -> None:
        pass


def make_closure() -> Any:
    captured = 1

    def inner(sender: object, **kwargs: Any) -> int:
        return captured

    return inner


def info(key: str, run: registry.Run = "background") -> ReceiverInfo:
    keyed = MODES[run].keyed
    return ReceiverInfo(key=key, run=run, sender=None, location="here:1", keyed=keyed)


class TestKeys:
    def test_key_is_module_and_qualname(self) -> None:
        assert registry.receiver_key(module_level) == f"{__name__}.module_level"

    def test_dispatch_uid_wins(self) -> None:
        assert (
            registry.receiver_key(module_level, "billing.invoice") == "billing.invoice"
        )

    def test_methods_carry_their_class(self) -> None:
        assert registry.receiver_key(Handlers.on_class) == (
            f"{__name__}.Handlers.on_class"
        )

    def test_decorated_receivers_are_keyed_by_the_function_inside(self) -> None:
        @functools.wraps(module_level)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            pass

        assert registry.receiver_key(wrapper) == f"{__name__}.module_level"

    def test_source_location_points_at_the_def(self) -> None:
        path, _, line = registry.source_location(module_level).rpartition(":")
        assert path == __file__
        assert int(line) == module_level.__code__.co_firstlineno


class TestFindable:
    @pytest.mark.parametrize(
        "receiver",
        [module_level, Handlers.on_class, Handlers.static],
        ids=["function", "classmethod", "staticmethod"],
    )
    def test_accepts_what_another_process_can_find(self, receiver: Any) -> None:
        registry.require_findable(receiver, "background", "k")

    @pytest.mark.parametrize(
        ("receiver", "why"),
        [
            (lambda sender, **kw: None, "lambda"),
            (make_closure(), "defined inside a function"),
            (Handlers().method, "bound to one instance"),
            (functools.partial(module_level), "callable object"),
        ],
        ids=["lambda", "closure", "bound-method", "callable-object"],
    )
    def test_refuses_what_it_could_not_find_again(
        self, receiver: Any, why: str
    ) -> None:
        with pytest.raises(ReceiverError, match=why) as raised:
            registry.require_findable(receiver, "background", "some.key")
        assert raised.value.key == "some.key"
        assert "run='background'" in str(raised.value)


class TestRunModes:
    def test_known_modes(self) -> None:
        assert registry.RUN_MODES == ("inline", "on_commit", "background")

    def test_unknown_mode_names_the_known_ones(self) -> None:
        signal = signalbox.Signal()
        with pytest.raises(ReceiverError, match=r"'later' is not a mode.*'on_commit'"):
            signal.connect(module_level, run="later")  # type: ignore[arg-type]
        assert not signal.has_listeners()

    def test_unknown_option_is_refused(self) -> None:
        signal = signalbox.Signal()
        with pytest.raises(
            ReceiverError, match=r"takes only prepare and exclude.*\['queue'\]"
        ):
            signal.connect(module_level, run="on_commit", queue="mail")
        assert not signal.has_listeners()

    def test_background_refuses_a_lambda_before_anything_else(self) -> None:
        signal = signalbox.Signal()
        with pytest.raises(ReceiverError, match="lambda"):
            signal.connect(lambda sender, **kw: None, run="background")
        assert not signal.has_listeners()


class TestRegistry:
    def test_a_keyed_mode_refuses_a_key_that_names_another_function(self) -> None:
        signal = signalbox.Signal()
        book = Registry()
        book.record(signal, module_level, module_level, None, info("shared"))
        with pytest.raises(ReceiverError, match="'shared' already names") as raised:
            book.record(
                signal, other_module_level, other_module_level, None, info("shared")
            )
        assert raised.value.receiver is other_module_level
        assert book.find(signal, "shared") is module_level

    def test_the_same_function_may_be_recorded_again(self) -> None:
        signal = signalbox.Signal()
        book = Registry()
        book.record(signal, module_level, module_level, None, info("k"))
        book.record(signal, module_level, module_level, Handlers, info("k"))
        assert book.find(signal, "k") is module_level

    def test_keys_are_per_signal(self) -> None:
        first, second = signalbox.Signal(), signalbox.Signal()
        book = Registry()
        book.record(first, module_level, module_level, None, info("k"))
        book.record(second, other_module_level, other_module_level, None, info("k"))
        assert book.find(second, "k") is other_module_level

    def test_inline_receivers_may_share_a_key_as_django_allows(self) -> None:
        signal = signalbox.Signal()
        book = Registry()
        book.record(signal, module_level, module_level, None, info("k", "inline"))
        book.record(
            signal, other_module_level, other_module_level, None, info("k", "inline")
        )

    def test_info_prefers_the_entry_for_the_sender(self) -> None:
        signal = signalbox.Signal()
        book = Registry()
        book.record(signal, module_level, module_level, None, info("any", "inline"))
        book.record(signal, module_level, module_level, Handlers, info("one", "inline"))
        assert book.info(signal, module_level, Handlers) == info("one", "inline")
        assert book.info(signal, module_level, None) == info("any", "inline")
        assert book.senders(signal) == [Handlers]

    def test_entries_die_with_their_receiver(self) -> None:
        import gc

        signal = signalbox.Signal()
        book = Registry()
        receiver = make_closure()
        book.record(signal, receiver, receiver, None, info("k", "inline"))
        del receiver
        gc.collect()
        assert book.find(signal, "k") is None

    def test_forget(self) -> None:
        signal = signalbox.Signal()
        book = Registry()
        book.record(signal, module_level, module_level, None, info("k", "inline"))
        book.forget(signal, module_level)
        assert book.info(signal, module_level) is None


class TestNames:
    def test_django_signals_are_named_by_their_defining_module(self) -> None:
        from django.core.signals import request_finished
        from django.db.models.signals import post_save

        assert registry.signal_name(post_save) == "django.db.models.signals.post_save"
        assert registry.signal_name(request_finished) == (
            "django.core.signals.request_finished"
        )

    def test_a_reexported_django_signal_keeps_its_own_name(self) -> None:
        from tests.testapp import signals

        assert registry.signal_name(signals.post_save) == (
            "django.db.models.signals.post_save"
        )

    def test_a_signalbox_signal_is_named_where_it_was_created(self) -> None:
        from tests.testapp import signals

        assert signals.order_shipped.defined_in == "tests.testapp.events"
        assert registry.signal_name(signals.order_shipped) == (
            "tests.testapp.events.order_shipped"
        )

    def test_module_level_signal(self) -> None:
        assert registry.signal_name(named_here) == f"{__name__}.named_here"

    def test_unreachable_signal_falls_back_to_repr(self) -> None:
        signal = signalbox.Signal()
        assert registry.signal_name(signal) == repr(signal)

    def test_senders_are_described_briefly(self) -> None:
        from tests.testapp.models import Order

        assert registry.describe_sender(None) is None
        assert registry.describe_sender(Order) == "testapp.Order"
        assert registry.describe_sender("testapp.Order") == "testapp.Order"
        assert registry.describe_sender(Handlers) == f"{__name__}.Handlers"


named_here = signalbox.Signal()
