"""signalbox.Signal must behave exactly like django.dispatch.Signal.

Every test here runs twice: once against Django's own ``Signal`` and once
against ``signalbox.Signal`` (the ``signal_class`` fixture). Where Django's
behaviour is the same in every supported version the test states it
directly; where it differs between versions (Django 5.2 and 6.x), the test
runs the same scenario on Django's class and on the class under test and
requires the same outcome, so it always compares against the Django that is
installed. A test that passes for ``django`` and fails for ``signalbox`` is a
compatibility bug in signalbox.

The coroutine side (``asend``/``asend_robust``, and ``send`` reaching
coroutine receivers) lives in ``test_dropin_async.py``.
"""

from __future__ import annotations

import contextvars
import functools
import gc
import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from django.dispatch import Signal as DjangoSignal
from django.dispatch import receiver

import signalbox

SignalClass = type[DjangoSignal]


@pytest.fixture(params=[DjangoSignal, signalbox.Signal], ids=["django", "signalbox"])
def signal_class(request: pytest.FixtureRequest) -> SignalClass:
    return request.param


@pytest.fixture
def signal(signal_class: SignalClass) -> DjangoSignal:
    return signal_class()


def same_as_django(
    signal_class: SignalClass, scenario: Callable[[SignalClass], Any]
) -> None:
    """Run ``scenario`` on Django's class and on ``signal_class``; compare."""
    expected = scenario(DjangoSignal)
    actual = scenario(signal_class)
    assert actual == expected


def collect() -> None:
    gc.collect()


# -- helpers: receivers and senders of every shape --------------------------


def echo(sender, value=None, **kwargs):
    return value


def other_echo(sender, value=None, **kwargs):
    return ("other", value)


def no_kwargs(sender):
    return "never"


class CallableReceiver:
    def __init__(self, tag: str = "instance") -> None:
        self.tag = tag
        self.calls: list[Any] = []

    def __call__(self, sender, **kwargs):
        self.calls.append(sender)
        return self.tag

    def method(self, sender, **kwargs):
        self.calls.append(sender)
        return f"{self.tag}.method"

    def method_without_kwargs(self, sender):
        return "never"


class BrokenReceiver:
    def method(self, sender, **kwargs):
        raise ValueError("second failure")


class CallableWithoutKwargs:
    def __call__(self, sender):
        return "never"


class Payload:
    """Something weakly referenceable whose death can be observed."""


class Slotted:
    """An object that cannot be weakly referenced, carrying an observable payload."""

    __slots__ = ("payload",)

    def __init__(self, payload: object) -> None:
        self.payload = payload


class SlottedReceiver:
    """A callable that cannot be weakly referenced (so needs weak=False)."""

    __slots__ = ("payload",)

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def __call__(self, sender, **kwargs):
        return "slotted"


class Sender:
    pass


class EqualSender:
    """Distinct instances that compare (and hash) equal."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualSender)

    def __hash__(self) -> int:
        return 42


class UnreprSender:
    def __repr__(self) -> str:
        raise RuntimeError("this sender has no repr")


class Boom(Exception):
    pass


class FatalBoom(BaseException):
    """Not an Exception: send_robust must let it through."""


# -- the class itself ---------------------------------------------------------


def test_is_a_django_signal(signal):
    assert isinstance(signal, DjangoSignal)


@pytest.mark.parametrize("use_caching", [False, True])
def test_constructor_takes_use_caching(signal_class, use_caching):
    by_keyword = signal_class(use_caching=use_caching)
    positional = signal_class(use_caching)
    assert by_keyword.use_caching is use_caching
    assert positional.use_caching is use_caching
    assert signal_class().use_caching is False
    assert by_keyword.receivers == []
    assert not by_keyword.has_listeners(Sender)


# -- send -----------------------------------------------------------------------


def test_send_without_receivers_returns_empty_list(signal):
    assert signal.send(sender=None) == []
    assert signal.send(sender=Sender, value=1) == []
    assert signal.send_robust(sender=Sender, value=1) == []


def test_receiver_gets_signal_sender_and_named_arguments(signal):
    seen = []

    def handler(**kwargs):
        seen.append(kwargs)

    signal.connect(handler)
    signal.send(Sender, a=1, b="two")
    signal.send(sender=None)
    assert seen == [
        {"signal": signal, "sender": Sender, "a": 1, "b": "two"},
        {"signal": signal, "sender": None},
    ]


def test_send_returns_pairs_in_connection_order(signal):
    instance = CallableReceiver("inst")
    signal.connect(other_echo)
    signal.connect(instance)
    signal.connect(echo)
    signal.connect(instance.method)
    responses = signal.send(Sender, value=7)
    assert responses == [
        (other_echo, ("other", 7)),
        (instance, "inst"),
        (echo, 7),
        (instance.method, "inst.method"),
    ]
    assert responses[0][0] is other_echo
    assert responses[1][0] is instance
    assert responses[2][0] is echo
    assert isinstance(responses, list)
    assert all(isinstance(pair, tuple) for pair in responses)


def test_order_is_connection_order_across_sender_filters(signal):
    calls = []

    def any_sender(**kwargs):
        calls.append("any")

    def only_sender(**kwargs):
        calls.append("only")

    def any_again(**kwargs):
        calls.append("any-again")

    signal.connect(any_sender)
    signal.connect(only_sender, sender=Sender)
    signal.connect(any_again)
    signal.send(Sender)
    signal.send(object())
    assert calls == ["any", "only", "any-again", "any", "any-again"]


def test_sender_filter(signal):
    other = Sender()
    signal.connect(echo, sender=Sender)
    signal.connect(other_echo)
    assert signal.send(Sender, value=1) == [(echo, 1), (other_echo, ("other", 1))]
    assert signal.send(other, value=2) == [(other_echo, ("other", 2))]
    assert signal.send(None, value=3) == [(other_echo, ("other", 3))]


def test_sender_filter_on_plain_values(signal):
    signal.connect(echo, sender="a-string")
    signal.connect(other_echo, sender=12345)
    assert signal.send("a-string", value=1) == [(echo, 1)]
    assert signal.send(12345, value=2) == [(other_echo, ("other", 2))]
    assert signal.send("another", value=3) == []


@pytest.mark.parametrize("use_caching", [False, True])
def test_sender_filter_with_equal_but_distinct_senders(signal_class, use_caching):
    def scenario(cls):
        sig = cls(use_caching=use_caching)
        first, second = EqualSender(), EqualSender()
        sig.connect(echo, sender=first)
        return (
            [value for _, value in sig.send(first, value="first")],
            [value for _, value in sig.send(second, value="second")],
            sig.has_listeners(second),
        )

    same_as_django(signal_class, scenario)


def test_sender_is_matched_by_identity_without_caching(signal):
    first, second = EqualSender(), EqualSender()
    signal.connect(echo, sender=first)
    assert signal.send(first, value=1) == [(echo, 1)]
    assert signal.send(second, value=2) == []


def test_send_accepts_sender_positionally_or_by_keyword(signal):
    signal.connect(echo)
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert signal.send(sender=Sender, value=1) == [(echo, 1)]
    assert signal.send_robust(Sender, value=2) == [(echo, 2)]
    assert signal.send_robust(sender=Sender, value=2) == [(echo, 2)]


def test_send_needs_a_sender(signal):
    signal.connect(echo)
    with pytest.raises(TypeError):
        signal.send()
    with pytest.raises(TypeError):
        signal.send_robust()


@pytest.mark.parametrize("name", ["signal", "sender"])
def test_reserved_argument_names(signal_class, name):
    def scenario(cls):
        sig = cls()
        sig.connect(echo)
        outcome = []
        for method in (sig.send, sig.send_robust):
            try:
                responses = method(Sender, **{name: "x"})
            except Exception as err:
                outcome.append(type(err).__name__)
            else:
                outcome.append([type(value).__name__ for _, value in responses])
        return outcome

    same_as_django(signal_class, scenario)


def test_send_propagates_and_stops_at_first_error(signal):
    calls = []

    def first(**kwargs):
        calls.append("first")

    def failing(**kwargs):
        calls.append("failing")
        raise Boom("no")

    def last(**kwargs):
        calls.append("last")

    signal.connect(first)
    signal.connect(failing)
    signal.connect(last)
    with pytest.raises(Boom, match="no"):
        signal.send(Sender)
    assert calls == ["first", "failing"]


def test_send_robust_returns_errors_and_reaches_everyone(signal, caplog):
    calls = []

    def failing(**kwargs):
        calls.append("failing")
        raise Boom("broken", 2)

    def fine(**kwargs):
        calls.append("fine")
        return "ok"

    signal.connect(failing)
    signal.connect(fine)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        responses = signal.send_robust(Sender)
    assert calls == ["failing", "fine"]
    assert [r for r, _ in responses] == [failing, fine]
    error = responses[0][1]
    assert isinstance(error, Boom)
    assert error.args == ("broken", 2)
    assert error.__traceback__ is not None
    assert responses[1] == (fine, "ok")


def test_send_robust_logs_each_failure(signal, caplog):
    instance = CallableReceiver()

    def failing(**kwargs):
        raise Boom("first failure")

    broken = BrokenReceiver()
    signal.connect(failing)
    signal.connect(instance.method)
    signal.connect(broken.method)
    with caplog.at_level(logging.DEBUG, logger="django.dispatch"):
        responses = signal.send_robust(Sender)
    records = [r for r in caplog.records if r.name == "django.dispatch"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.ERROR,
            "Error calling test_send_robust_logs_each_failure.<locals>.failing "
            "in Signal.send_robust() (first failure)",
        ),
        (
            logging.ERROR,
            "Error calling BrokenReceiver.method in Signal.send_robust() "
            "(second failure)",
        ),
    ]
    assert records[0].exc_info[1] is responses[0][1]
    assert records[1].exc_info[1] is responses[2][1]
    assert responses[1][1] == "instance.method"


def test_send_robust_lets_base_exceptions_through(signal):
    calls = []

    def fatal(**kwargs):
        calls.append("fatal")
        raise FatalBoom

    def after(**kwargs):
        calls.append("after")

    signal.connect(fatal)
    signal.connect(after)
    with pytest.raises(FatalBoom):
        signal.send_robust(Sender)
    assert calls == ["fatal"]


def test_send_robust_does_not_log_success(signal, caplog):
    signal.connect(echo)
    with caplog.at_level(logging.DEBUG, logger="django.dispatch"):
        assert signal.send_robust(Sender, value=1) == [(echo, 1)]
    assert [r for r in caplog.records if r.name == "django.dispatch"] == []


def test_receiver_sending_the_same_signal_again(signal):
    calls = []

    def recursive(sender, depth, **kwargs):
        calls.append(depth)
        if depth < 3:
            inner = signal.send(sender, depth=depth + 1)
            return [value for _, value in inner]
        return "bottom"

    signal.connect(recursive)
    assert signal.send(Sender, depth=0) == [(recursive, [[["bottom"]]])]
    assert calls == [0, 1, 2, 3]


# -- connect ------------------------------------------------------------------


def test_connect_returns_none(signal):
    assert signal.connect(echo) is None


def test_connect_takes_django_arguments_positionally(signal):
    signal.connect(echo, Sender, False, "echo-uid")
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert signal.send(object(), value=1) == []
    assert signal.disconnect(None, Sender, "echo-uid") is True
    assert not signal.has_listeners(Sender)


def test_connect_rejects_unknown_keyword_arguments(signal):
    # Django's connect() has no such parameter: calling it so is a TypeError.
    with pytest.raises(TypeError):
        signal.connect(echo, providing_args=["value"])
    assert not signal.has_listeners()


def test_connect_rejects_extra_positional_arguments(signal):
    with pytest.raises(TypeError):
        signal.connect(echo, None, True, None, "extra")


def test_same_receiver_connected_twice_is_called_once(signal):
    instance = CallableReceiver()
    for _ in range(4):
        signal.connect(instance)
        signal.connect(echo)
        signal.connect(instance.method)
    responses = signal.send(Sender, value=1)
    assert responses == [
        (instance, "instance"),
        (echo, 1),
        (instance.method, "instance.method"),
    ]
    assert len(signal.receivers) == 3


def test_same_receiver_for_two_senders(signal):
    first, second = Sender(), Sender()
    signal.connect(echo, sender=first)
    signal.connect(echo, sender=second)
    assert len(signal.receivers) == 2
    assert signal.send(first, value=1) == [(echo, 1)]
    assert signal.send(second, value=2) == [(echo, 2)]
    assert signal.send(None, value=3) == []
    assert signal.disconnect(echo, sender=first) is True
    assert signal.send(first, value=1) == []
    assert signal.send(second, value=2) == [(echo, 2)]
    assert signal.disconnect(echo, sender=first) is False
    assert signal.disconnect(echo, sender=second) is True
    assert signal.receivers == []


def test_same_receiver_for_a_sender_and_for_any_sender(signal):
    signal.connect(echo, sender=Sender)
    signal.connect(echo)
    assert signal.send(Sender, value=1) == [(echo, 1), (echo, 1)]
    assert signal.send(None, value=2) == [(echo, 2)]


def test_dispatch_uid_prevents_duplicates(signal):
    signal.connect(echo, dispatch_uid="the-uid")
    signal.connect(other_echo, dispatch_uid="the-uid")
    signal.connect(echo, dispatch_uid="the-uid")
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert len(signal.receivers) == 1


def test_dispatch_uid_is_per_sender(signal):
    signal.connect(echo, sender=Sender, dispatch_uid="uid")
    signal.connect(other_echo, dispatch_uid="uid")
    assert signal.send(Sender, value=1) == [(echo, 1), (other_echo, ("other", 1))]
    assert signal.send(None, value=2) == [(other_echo, ("other", 2))]


def test_dispatch_uid_and_plain_connection_are_distinct(signal):
    signal.connect(echo, dispatch_uid="uid")
    signal.connect(echo)
    assert signal.send(Sender, value=1) == [(echo, 1), (echo, 1)]


def test_non_string_dispatch_uid(signal):
    signal.connect(echo, dispatch_uid=("a", 1))
    signal.connect(other_echo, dispatch_uid=("a", 1))
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert signal.disconnect(dispatch_uid=("a", 1)) is True
    assert signal.send(Sender, value=1) == []


def test_unhashable_callable_receiver(signal):
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return self is other

        def __call__(self, **kwargs):
            return "unhashable"

    instance = Unhashable()
    signal.connect(instance)
    assert signal.send(Sender) == [(instance, "unhashable")]
    assert signal.disconnect(instance) is True
    assert signal.send(Sender) == []


def test_weak_connection_of_unreferenceable_receiver_fails(signal):
    with pytest.raises(TypeError):
        signal.connect(SlottedReceiver(None))
    assert signal.receivers == []
    assert not signal.has_listeners()


def test_strong_connection_of_unreferenceable_receiver(signal):
    instance = SlottedReceiver(None)
    signal.connect(instance, weak=False)
    assert signal.send(Sender) == [(instance, "slotted")]
    assert signal.disconnect(instance) is True
    assert signal.send(Sender) == []


def test_partial_receiver(signal):
    bound = functools.partial(echo, value="from-partial")
    signal.connect(bound)
    assert signal.send(Sender) == [(bound, "from-partial")]


# -- disconnect ---------------------------------------------------------------


def test_disconnect_reports_whether_it_disconnected(signal):
    instance = CallableReceiver()
    signal.connect(instance)
    assert signal.disconnect(instance) is True
    assert signal.disconnect(instance) is False
    assert signal.disconnect(CallableReceiver()) is False
    assert signal.disconnect(echo) is False
    assert signal.disconnect(dispatch_uid="never-connected") is False
    assert signal.receivers == []


def test_disconnect_needs_the_sender_it_was_connected_with(signal):
    signal.connect(echo, sender=Sender)
    assert signal.disconnect(echo) is False
    assert signal.disconnect(echo, sender=object()) is False
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert signal.disconnect(echo, sender=Sender) is True
    assert signal.send(Sender, value=1) == []


def test_disconnect_by_dispatch_uid(signal):
    signal.connect(echo, dispatch_uid="uid")
    signal.connect(echo, sender=Sender, dispatch_uid="uid")
    assert signal.disconnect(echo) is False  # connected by uid, not by identity
    assert signal.disconnect(dispatch_uid="uid") is True
    assert signal.send(None, value=1) == []
    assert signal.send(Sender, value=2) == [(echo, 2)]
    assert signal.disconnect(dispatch_uid="uid", sender=Sender) is True
    assert signal.receivers == []


def test_disconnect_bound_method_by_a_fresh_bound_method(signal):
    instance = CallableReceiver()
    signal.connect(instance.method)
    assert instance.method is not instance.method
    assert signal.disconnect(instance.method) is True
    assert signal.send(Sender) == []


def test_disconnect_then_reconnect_goes_to_the_end(signal):
    signal.connect(echo)
    signal.connect(other_echo)
    signal.send(Sender, value=0)
    signal.disconnect(echo)
    signal.connect(echo)
    assert signal.send(Sender, value=1) == [(other_echo, ("other", 1)), (echo, 1)]


# -- has_listeners ------------------------------------------------------------


def test_has_listeners(signal):
    assert not signal.has_listeners()
    assert not signal.has_listeners(Sender)
    signal.connect(echo, sender=Sender)
    assert signal.has_listeners(Sender)
    assert not signal.has_listeners()
    assert not signal.has_listeners(object())
    instance = CallableReceiver()
    signal.connect(instance)
    assert signal.has_listeners()
    assert signal.has_listeners(object())
    signal.disconnect(instance)
    assert not signal.has_listeners()
    signal.disconnect(echo, sender=Sender)
    assert not signal.has_listeners(Sender)


# -- use_caching --------------------------------------------------------------


def test_caching_signal_sends_and_follows_changes(signal_class):
    signal = signal_class(use_caching=True)
    other = Sender()
    assert signal.send(Sender, value=0) == []
    signal.connect(echo, sender=Sender)
    assert signal.send(Sender, value=1) == [(echo, 1)]
    assert signal.send(other, value=1) == []
    assert signal.send(other, value=1) == []
    signal.connect(other_echo, sender=other)
    assert signal.send(other, value=2) == [(other_echo, ("other", 2))]
    assert signal.send(Sender, value=2) == [(echo, 2)]
    signal.disconnect(echo, sender=Sender)
    assert signal.send(Sender, value=3) == []
    assert not signal.has_listeners(Sender)
    assert signal.has_listeners(other)


def test_caching_signal_does_not_keep_senders_alive(signal_class):
    signal = signal_class(use_caching=True)
    signal.connect(echo)

    class TransientSender:
        pass

    ref = weakref.ref(TransientSender)
    signal.send(TransientSender, value=1)
    signal.has_listeners(TransientSender)
    del TransientSender
    collect()
    assert ref() is None


@pytest.mark.parametrize("sender", [None, 1, "text"])
def test_caching_signal_with_unreferenceable_senders(signal_class, sender):
    def scenario(cls):
        sig = cls(use_caching=True)
        sig.connect(echo)
        outcome = []
        for call in (
            lambda: sig.send(sender, value=1),
            lambda: sig.send_robust(sender, value=1),
            lambda: sig.has_listeners(sender),
        ):
            try:
                outcome.append(call())
            except Exception as err:
                outcome.append(type(err))
        return outcome

    same_as_django(signal_class, scenario)


def test_connecting_leaves_the_sender_cache_empty(signal_class):
    # Django fills a caching signal's cache only by sending; a connect (and
    # signalbox's check that the connection was kept) must not.
    def scenario(cls):
        sig = cls(use_caching=True)
        sig.connect(echo, sender=Sender)
        sig.connect(other_echo, sender=Sender, weak=False)
        after_connect = dict(sig.sender_receivers_cache)
        sig.send(Sender, value=1)
        after_send = list(sig.sender_receivers_cache)
        sig.disconnect(echo, sender=Sender)
        return after_connect, after_send, dict(sig.sender_receivers_cache)

    same_as_django(signal_class, scenario)


def test_caching_signal_cache_is_empty_after_connect(signal_class):
    sig = signal_class(use_caching=True)
    sig.connect(echo, sender=Sender)
    assert dict(sig.sender_receivers_cache) == {}


# -- changes during a send ----------------------------------------------------


def test_receiver_connected_during_send_runs_from_the_next_send(signal):
    calls = []

    def late(**kwargs):
        calls.append("late")

    def connector(**kwargs):
        calls.append("connector")
        signal.connect(late)

    signal.connect(connector)
    signal.send(Sender)
    assert calls == ["connector"]
    signal.send(Sender)
    assert calls == ["connector", "connector", "late"]


def test_receiver_disconnecting_itself_during_send(signal):
    calls = []

    def once(**kwargs):
        calls.append("once")
        signal.disconnect(once)

    def always(**kwargs):
        calls.append("always")

    signal.connect(once)
    signal.connect(always)
    signal.send(Sender)
    signal.send(Sender)
    assert calls == ["once", "always", "always"]


def test_receiver_disconnected_during_send_still_runs_in_that_send(signal):
    calls = []

    def disconnector(**kwargs):
        calls.append(("disconnector", signal.disconnect(victim)))

    def victim(**kwargs):
        calls.append("victim")

    signal.connect(disconnector)
    signal.connect(victim)
    signal.send(Sender)
    signal.send(Sender)
    assert calls == [("disconnector", True), "victim", ("disconnector", False)]


def test_receiver_dropped_during_send_still_runs_in_that_send(signal):
    calls = []
    holder = {}

    def victim(**kwargs):
        calls.append("victim")

    def dropper(**kwargs):
        calls.append("dropper")
        holder.clear()
        collect()

    holder["victim"] = victim
    signal.connect(dropper)
    signal.connect(victim)
    del victim
    signal.send(Sender)
    assert calls == ["dropper", "victim"]
    signal.send(Sender)
    assert calls == ["dropper", "victim", "dropper"]


def test_changes_during_send_robust(signal):
    calls = []

    def late(**kwargs):
        calls.append("late")

    def changer(**kwargs):
        calls.append("changer")
        signal.disconnect(changer)
        signal.connect(late)
        raise Boom

    signal.connect(changer)
    responses = signal.send_robust(Sender)
    assert [r for r, _ in responses] == [changer]
    assert signal.send_robust(Sender) == [(late, None)]
    assert calls == ["changer", "late"]


# -- garbage collection of receivers -------------------------------------------


def test_weak_function_receiver_is_dropped(signal):
    calls = []

    def temporary(**kwargs):
        calls.append("called")

    signal.connect(temporary)
    signal.send(Sender)
    ref = weakref.ref(temporary)
    del temporary
    collect()
    assert ref() is None
    assert signal.send(Sender) == []
    assert calls == ["called"]
    assert not signal.has_listeners()


def test_weak_bound_method_receiver_is_dropped_with_its_instance(signal):
    instance = CallableReceiver()
    signal.connect(instance.method, sender=Sender)
    assert signal.send(Sender) == [(instance.method, "instance.method")]
    ref = weakref.ref(instance)
    del instance
    collect()
    assert ref() is None
    assert signal.send(Sender) == []
    assert not signal.has_listeners(Sender)


def test_weak_callable_instance_receiver_is_dropped(signal):
    instance = CallableReceiver()
    signal.connect(instance)
    signal.send(Sender)
    ref = weakref.ref(instance)
    del instance
    collect()
    assert ref() is None
    assert signal.send(Sender) == []


def test_weak_coroutine_receiver_is_dropped(signal):
    async def temporary(**kwargs):
        return "never"

    signal.connect(temporary)
    assert signal.has_listeners()
    ref = weakref.ref(temporary)
    del temporary
    collect()
    assert ref() is None
    assert signal.send(Sender) == []
    assert not signal.has_listeners()


def test_weak_temporary_partial_is_dropped_at_once(signal):
    signal.connect(functools.partial(echo, value=1))
    collect()
    assert signal.send(Sender) == []


def test_weak_receiver_for_two_senders_is_dropped_for_both(signal):
    first, second = Sender(), Sender()
    instance = CallableReceiver()
    signal.connect(instance, sender=first)
    signal.connect(instance, sender=second)
    signal.send(first)
    signal.send(second)
    del instance
    collect()
    assert signal.send(first) == []
    assert signal.send(second) == []
    assert not signal.has_listeners(first)
    assert not signal.has_listeners(second)


def test_only_the_dead_receiver_is_dropped(signal):
    survivor = CallableReceiver("survivor")
    doomed = CallableReceiver("doomed")
    signal.connect(doomed)
    signal.connect(survivor)
    signal.connect(echo)
    signal.send(Sender, value=1)
    del doomed
    collect()
    assert signal.send(Sender, value=2) == [(survivor, "survivor"), (echo, 2)]


def test_strong_receivers_are_kept_alive(signal):
    def make_function():
        def strongly_held(**kwargs):
            return "function"

        return strongly_held

    function = make_function()
    instance = CallableReceiver("strong")
    signal.connect(function, weak=False)
    signal.connect(instance, weak=False)
    signal.connect(CallableReceiver("bound").method, weak=False)
    function_ref, instance_ref = weakref.ref(function), weakref.ref(instance)
    del function, instance
    collect()
    assert function_ref() is not None
    assert instance_ref() is not None
    responses = signal.send(Sender)
    assert [value for _, value in responses] == ["function", "strong", "bound.method"]


def test_disconnect_releases_a_strong_receiver(signal):
    instance = CallableReceiver()
    signal.connect(instance, weak=False)
    signal.send(Sender)
    ref = weakref.ref(instance)
    assert signal.disconnect(instance) is True
    del instance
    collect()
    assert ref() is None


def test_strong_bound_method_is_returned_as_connected(signal):
    instance = CallableReceiver()
    method = instance.method
    signal.connect(method, weak=False)
    for _ in range(3):
        responses = signal.send(Sender)
        assert responses == [(method, "instance.method")]
        # Django stores the bound method itself and hands that very object back.
        assert responses[0][0] is method


def test_dead_receivers_are_cleared_from_receivers(signal):
    # Django's own suite checks a signal is clean this way: after a weak
    # receiver dies, any use of the signal through its API drops the entry.
    def temporary(**kwargs):
        pass

    signal.connect(temporary)
    signal.send(Sender)
    signal.has_listeners()
    del temporary
    collect()
    assert not signal.has_listeners()
    assert signal.receivers == []


def test_dead_receivers_are_cleared_by_send(signal):
    instance = CallableReceiver()
    signal.connect(instance.method)
    signal.connect(echo)
    signal.send(Sender, value=1)
    del instance
    collect()
    assert signal.send(Sender, value=2) == [(echo, 2)]
    assert len(signal.receivers) == 1


def test_receiver_ignored_for_a_taken_dispatch_uid_is_not_kept(signal):
    signal.connect(echo, dispatch_uid="uid")
    payload = Payload()
    ignored = SlottedReceiver(payload)
    signal.connect(ignored, weak=False, dispatch_uid="uid")
    assert signal.send(Sender, value=1) == [(echo, 1)]
    ref = weakref.ref(payload)
    del ignored, payload
    collect()
    assert ref() is None


def test_collecting_a_signal_and_a_local_receiver_class_is_silent(signal_class):
    # A bound method of a class defined in a function, weakly connected: when
    # the signal, the instance and the class all become garbage, they go away
    # without Python reporting "Exception ignored in ..." (which pytest turns
    # into an error, and which otherwise lands on stderr).
    collect()  # garbage from earlier tests is not this test's business
    reports: list[str] = []

    def record(report: Any) -> None:
        reports.append(
            f"{report.exc_type.__name__}: {report.exc_value} (in {report.object!r})"
        )

    def scenario() -> None:
        sig = signal_class()

        class Local:
            def method(self, sender, **kwargs):
                return "local"

        instance = Local()
        sig.connect(instance.method)
        assert sig.send(Sender) == [(instance.method, "local")]

    previous = sys.unraisablehook
    sys.unraisablehook = record
    try:
        scenario()
        collect()
    finally:
        sys.unraisablehook = previous
    assert reports == []


def _weak_reference_counts(signal: DjangoSignal, *objects: object) -> list[int]:
    return [weakref.getweakrefcount(obj) for obj in (signal, *objects)]


@pytest.mark.parametrize("use_caching", [False, True])
def test_a_strong_receiver_gets_no_weak_references(signal_class, use_caching):
    # Django holds a weak=False receiver strongly and makes no weak reference
    # to it or to the signal, connecting, sending or disconnecting.
    def scenario(cls):
        sig = cls(use_caching=use_caching)
        instance = CallableReceiver()

        def handler(**kwargs):
            return "handled"

        counts = [_weak_reference_counts(sig, handler, instance)]
        sig.connect(handler, weak=False)
        sig.connect(instance, sender=Sender, weak=False)
        counts.append(_weak_reference_counts(sig, handler, instance))
        sig.send(Sender)
        sig.send_robust(Sender)
        counts.append(_weak_reference_counts(sig, handler, instance))
        sig.disconnect(handler)
        sig.disconnect(instance, sender=Sender)
        counts.append(_weak_reference_counts(sig, handler, instance))
        return counts

    same_as_django(signal_class, scenario)


def test_strong_receiver_on_signalbox_signal_has_no_weak_references():
    sig = signalbox.Signal()

    def handler(**kwargs):
        return "handled"

    sig.connect(handler, weak=False)
    sig.send(Sender)
    assert weakref.getweakrefcount(sig) == 0
    assert weakref.getweakrefcount(handler) == 0
    assert sig.disconnect(handler)
    assert weakref.getweakrefcount(handler) == 0


def test_a_strong_receiver_disconnected_by_uid_is_let_go(signal_class):
    sig = signal_class()
    instance = CallableReceiver()
    ref = weakref.ref(instance)
    sig.connect(instance, weak=False, dispatch_uid="strong-uid")
    assert sig.disconnect(dispatch_uid="strong-uid")
    del instance
    collect()
    assert ref() is None


# -- garbage collection of senders --------------------------------------------


def test_connect_does_not_keep_a_sender_alive(signal):
    sender = Sender()
    signal.connect(echo, sender=sender)
    signal.send(sender, value=1)
    ref = weakref.ref(sender)
    del sender
    collect()
    assert ref() is None


def test_connect_does_not_keep_an_unreferenceable_sender_alive(signal):
    payload = Payload()
    sender = Slotted(payload)
    signal.connect(echo, sender=sender)  # connected, never sent
    ref = weakref.ref(payload)
    del sender, payload
    collect()
    assert ref() is None


def test_send_does_not_keep_an_unreferenceable_sender_alive(signal):
    signal.connect(echo)
    payload = Payload()
    sender = Slotted(payload)
    assert signal.send(sender, value=1) == [(echo, 1)]
    assert signal.send_robust(sender, value=1) == [(echo, 1)]
    assert signal.has_listeners(sender)
    ref = weakref.ref(payload)
    del sender, payload
    collect()
    assert ref() is None


def test_sender_death_and_its_receivers(signal_class):
    # Django 6.0+ forgets receivers connected for a sender once the sender is
    # gone; 5.2 keeps them (keyed by a dead id). Either way, the same as Django.
    def scenario(cls):
        sig = cls()
        sender = Sender()
        sig.connect(echo, sender=sender)
        sig.connect(other_echo)
        sig.send(None, value=0)
        sig.send(sender, value=0)
        del sender
        collect()
        listening = sig.has_listeners()
        return listening, len(sig.receivers)

    same_as_django(signal_class, scenario)


def test_a_sender_does_not_need_a_repr(signal):
    sender = UnreprSender()
    signal.connect(echo, sender=sender)
    assert signal.send(sender, value=1) == [(echo, 1)]
    assert signal.disconnect(echo, sender=sender) is True


def test_the_signal_itself_can_be_collected(signal_class):
    def scenario(cls):
        sig = cls()
        sig.connect(echo)  # weak: echo is a module-level function and lives on
        sig.connect(other_echo, weak=False)
        sig.send(Sender, value=1)
        sig.has_listeners()
        ref = weakref.ref(sig)
        del sig
        collect()
        return ref() is None

    same_as_django(signal_class, scenario)


def test_signal_with_only_strong_receivers_can_be_collected(signal_class):
    sig = signal_class()
    sig.connect(echo, weak=False)
    sig.send(Sender, value=1)
    ref = weakref.ref(sig)
    del sig
    collect()
    assert ref() is None


# -- the receivers attribute ---------------------------------------------------


def test_receivers_list_changed_in_place_is_followed(signal):
    # Code that mutes a signal edits ``receivers`` directly; Django reads the
    # list afresh on every send, so such an edit takes effect at once.
    signal.connect(echo)
    signal.connect(other_echo)
    assert len(signal.send(Sender, value=1)) == 2
    del signal.receivers[0]
    assert signal.send(Sender, value=2) == [(other_echo, ("other", 2))]
    signal.receivers.clear()
    assert not signal.has_listeners()
    assert signal.send(Sender, value=3) == []


def test_receivers_list_replaced_and_restored(signal):
    signal.connect(echo)
    assert signal.send(Sender, value=1) == [(echo, 1)]
    saved = signal.receivers
    signal.receivers = []
    assert signal.send(Sender, value=2) == []
    assert not signal.has_listeners()
    signal.receivers = saved
    signal.sender_receivers_cache.clear()
    assert signal.send(Sender, value=3) == [(echo, 3)]
    assert signal.has_listeners()


# -- DEBUG checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make_receiver",
    [
        pytest.param(lambda: "not callable", id="string"),
        pytest.param(lambda: 42, id="int"),
        pytest.param(lambda: Payload(), id="object"),
    ],
)
@pytest.mark.parametrize("weak", [True, False])
def test_debug_refuses_a_non_callable_receiver(signal, settings, make_receiver, weak):
    settings.DEBUG = True
    with pytest.raises(TypeError, match=r"^Signal receivers must be callable\.$"):
        signal.connect(make_receiver(), weak=weak)
    assert signal.receivers == []


@pytest.mark.parametrize(
    "make_receiver",
    [
        pytest.param(lambda: no_kwargs, id="function"),
        pytest.param(lambda: CallableWithoutKwargs(), id="instance"),
        pytest.param(lambda: CallableReceiver().method_without_kwargs, id="method"),
        pytest.param(lambda: lambda sender: None, id="lambda"),
    ],
)
def test_debug_refuses_a_receiver_without_kwargs(signal, settings, make_receiver):
    settings.DEBUG = True
    receiver_ = make_receiver()
    with pytest.raises(
        ValueError,
        match=r"^Signal receivers must accept keyword arguments \(\*\*kwargs\)\.$",
    ):
        signal.connect(receiver_, weak=False)
    assert signal.receivers == []


def test_debug_refuses_a_coroutine_receiver_without_kwargs(signal, settings):
    settings.DEBUG = True

    async def no_kwargs_async(sender):
        return None

    with pytest.raises(ValueError, match="keyword arguments"):
        signal.connect(no_kwargs_async)


def test_debug_refuses_before_connecting_with_a_uid(signal, settings):
    settings.DEBUG = True
    with pytest.raises(ValueError, match="keyword arguments"):
        signal.connect(no_kwargs, dispatch_uid="uid")
    # The uid was not taken by the refused receiver.
    signal.connect(echo, dispatch_uid="uid")
    assert signal.send(Sender, value=1) == [(echo, 1)]


def test_debug_accepts_good_receivers(signal, settings):
    settings.DEBUG = True
    instance = CallableReceiver()

    async def coroutine(**kwargs):
        return None

    def keyword_only(*, sender, **kwargs):
        return "kw"

    for good in (echo, instance, instance.method, coroutine, keyword_only):
        signal.connect(good)
    signal.connect(functools.partial(echo, value=3), weak=False)
    assert len(signal.receivers) == 6


def test_without_debug_receivers_are_not_checked(signal, settings):
    settings.DEBUG = False
    signal.connect(no_kwargs)
    signal.connect("not callable", weak=False)
    assert len(signal.receivers) == 2
    with pytest.raises(TypeError):
        signal.send(Sender)


def test_without_debug_a_receiver_without_kwargs_fails_at_send(signal, settings):
    settings.DEBUG = False
    signal.connect(no_kwargs)
    with pytest.raises(TypeError, match="signal"):
        signal.send(Sender)
    responses = signal.send_robust(Sender)
    assert responses[0][0] is no_kwargs
    assert isinstance(responses[0][1], TypeError)


def test_weak_non_callable_without_debug(signal_class, settings):
    settings.DEBUG = False

    def scenario(cls):
        sig = cls()
        try:
            sig.connect(42)
        except Exception as err:
            return type(err), len(sig.receivers)
        return None, len(sig.receivers)

    same_as_django(signal_class, scenario)


# -- the receiver decorator -----------------------------------------------------


def test_receiver_decorator_single_signal(signal):
    @receiver(signal)
    def handler(sender, value, **kwargs):
        return value * 2

    assert callable(handler)
    assert handler(sender=None, value=2) == 4  # returned unchanged
    assert signal.send(Sender, value=5) == [(handler, 10)]


@pytest.mark.parametrize("container", [list, tuple])
def test_receiver_decorator_list_of_signals(signal_class, container):
    first, second, third = signal_class(), signal_class(), DjangoSignal()
    seen = []

    @receiver(container([first, second, third]))
    def handler(sender, value, **kwargs):
        seen.append(value)
        return value

    assert first.send(Sender, value="a") == [(handler, "a")]
    assert second.send(Sender, value="b") == [(handler, "b")]
    assert third.send(Sender, value="c") == [(handler, "c")]
    assert seen == ["a", "b", "c"]


def test_receiver_decorator_passes_connect_arguments(signal):
    @receiver([signal], sender=Sender, dispatch_uid="decorated", weak=False)
    def handler(sender, **kwargs):
        return "decorated"

    @receiver(signal, sender=Sender, dispatch_uid="decorated")
    def duplicate(sender, **kwargs):
        return "duplicate"

    assert signal.send(Sender) == [(handler, "decorated")]
    assert signal.send(object()) == []
    ref = weakref.ref(handler)
    del handler
    collect()
    assert ref() is not None  # weak=False was passed through
    assert signal.disconnect(dispatch_uid="decorated", sender=Sender) is True


def test_receiver_decorator_in_debug_checks_kwargs(signal, settings):
    settings.DEBUG = True
    with pytest.raises(ValueError, match="keyword arguments"):

        @receiver(signal)
        def handler(sender):
            return None


# -- coroutine receivers through the synchronous API ----------------------------


def test_send_awaits_coroutine_receivers_after_sync_ones(signal):
    calls = []

    async def first_async(sender, **kwargs):
        calls.append("first_async")
        return "a1"

    def sync_receiver(sender, **kwargs):
        calls.append("sync")
        return "s"

    async def second_async(sender, **kwargs):
        calls.append("second_async")
        return "a2"

    signal.connect(first_async)
    signal.connect(sync_receiver)
    signal.connect(second_async)
    responses = signal.send(Sender)
    assert responses == [
        (sync_receiver, "s"),
        (first_async, "a1"),
        (second_async, "a2"),
    ]
    assert calls[0] == "sync"
    assert sorted(calls[1:]) == ["first_async", "second_async"]
    assert signal.has_listeners()


def test_send_single_coroutine_receiver(signal):
    async def only(sender, value, **kwargs):
        return value + 1

    signal.connect(only, sender=Sender)
    assert signal.send(Sender, value=1) == [(only, 2)]
    assert signal.send(None, value=1) == []


def test_send_propagates_a_coroutine_receivers_error(signal):
    async def failing(**kwargs):
        raise Boom("async failure")

    signal.connect(failing)
    with pytest.raises(Boom, match="async failure"):
        signal.send(Sender)


def test_send_with_two_failing_coroutine_receivers(signal_class):
    # Django 5.2 gathers (the first error propagates); 6.x uses a TaskGroup
    # (an ExceptionGroup of both). Either way, the same as Django.
    def scenario(cls):
        sig = cls()

        async def fails_first(**kwargs):
            raise Boom("one")

        async def fails_second(**kwargs):
            raise ValueError("two")

        sig.connect(fails_first)
        sig.connect(fails_second)
        try:
            sig.send(Sender)
        except BaseException as err:
            inner = getattr(err, "exceptions", ())
            return type(err), sorted(type(e).__name__ for e in inner)
        return None

    same_as_django(signal_class, scenario)


def test_send_robust_with_coroutine_receivers(signal, caplog):
    async def failing(**kwargs):
        raise Boom("async robust")

    async def fine(**kwargs):
        return "fine"

    def sync_failing(**kwargs):
        raise ValueError("sync robust")

    signal.connect(failing)
    signal.connect(fine)
    signal.connect(sync_failing)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        responses = signal.send_robust(Sender)
    assert [r for r, _ in responses] == [sync_failing, failing, fine]
    assert isinstance(responses[0][1], ValueError)
    assert isinstance(responses[1][1], Boom)
    assert responses[2][1] == "fine"
    messages = sorted(
        r.getMessage() for r in caplog.records if r.name == "django.dispatch"
    )
    assert messages == [
        "Error calling test_send_robust_with_coroutine_receivers.<locals>.failing "
        "in Signal.send_robust() (async robust)",
        "Error calling test_send_robust_with_coroutine_receivers.<locals>."
        "sync_failing in Signal.send_robust() (sync robust)",
    ]


def test_send_robust_with_a_coroutine_base_exception(signal_class):
    def scenario(cls):
        sig = cls()

        async def fatal(**kwargs):
            raise FatalBoom

        sig.connect(fatal)
        try:
            sig.send_robust(Sender)
        except BaseException as err:
            return type(err)
        return None

    same_as_django(signal_class, scenario)


def test_partial_of_a_coroutine_function_is_awaited(signal):
    async def add(sender, value, extra, **kwargs):
        return value + extra

    bound = functools.partial(add, extra=10)
    signal.connect(bound)
    assert signal.send(Sender, value=1) == [(bound, 11)]


_variable: contextvars.ContextVar[str] = contextvars.ContextVar(
    "dropin_sync", default="unset"
)


@pytest.mark.parametrize("shape", ["one-async", "two-async", "sync-and-async"])
def test_send_context_changes_made_by_coroutine_receivers(signal_class, shape):
    # Whether a context variable set by a coroutine receiver is visible to the
    # code that called send() differs between Django versions; it must not
    # differ between Django and signalbox.
    def scenario(cls):
        sig = cls()

        async def setter(**kwargs):
            _variable.set("set-by-async")

        async def bystander(**kwargs):
            return None

        def sync_bystander(**kwargs):
            return None

        if shape == "sync-and-async":
            sig.connect(sync_bystander)
        sig.connect(setter)
        if shape == "two-async":
            sig.connect(bystander)

        def run():
            sig.send(Sender)
            return _variable.get()

        return contextvars.Context().run(run)

    same_as_django(signal_class, scenario)


def test_send_context_changes_made_by_sync_receivers(signal):
    def setter(**kwargs):
        _variable.set("set-by-sync")

    signal.connect(setter)

    def run():
        signal.send(Sender)
        return _variable.get()

    assert contextvars.Context().run(run) == "set-by-sync"
