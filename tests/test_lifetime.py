"""How long a receiver, and the adapter signalbox connects for it, stays alive.

Django holds a receiver weakly unless ``weak=False``, and a bound method as
long as its instance. Whatever the mode, signalbox must keep exactly that
promise: its adapter lives as long as the receiver (so a weakly connected
receiver keeps firing while it is alive, with no strong reference anywhere
but its owner's), never keeps the receiver alive itself, and goes with it.

Most tests use a fresh signal, so nothing leaks between tests; the ones on
Django's ``post_save`` disconnect what they connected.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal

import signalbox
from signalbox._adapters import Adapter
from tests.testapp.models import Order


@pytest.fixture(params=["signalbox", "django"])
def signal(request: pytest.FixtureRequest) -> DjangoSignal:
    """A fresh signal of each class: nothing connected outlives the test."""
    return signalbox.Signal() if request.param == "signalbox" else DjangoSignal()


@pytest.fixture(
    params=[
        "inline",
        # Real commits: outside a transaction, on_commit runs at once.
        pytest.param("on_commit", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def run(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True, scope="module")
def _quick_collections() -> Iterator[None]:
    """Leave everything older than this module out of gc.collect()'s walk:
    the tests only care about objects they make, and a full walk of a big
    test session's heap costs tens of milliseconds per collection."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def collect() -> None:
    gc.collect()


def make_receiver(calls: list[Any], coroutine: bool = False) -> Callable[..., Any]:
    if coroutine:

        async def async_receiver(sender: object, **kwargs: Any) -> None:
            calls.append(sender)

        return async_receiver

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append(sender)

    return receiver


class Listener:
    def __init__(self, calls: list[Any]) -> None:
        self.calls = calls

    def on_signal(self, sender: object, **kwargs: Any) -> None:
        self.calls.append(sender)


def adapters_for(receiver: object) -> list[Adapter]:
    """Every signalbox adapter still in memory that stands for ``receiver``."""
    collect()
    # type(), not isinstance(): isinstance() would build the lazy objects
    # (SimpleLazyObject answers __class__ by building what it wraps).
    return [
        obj
        for obj in gc.get_objects()
        if issubclass(type(obj), Adapter) and obj.receiver is receiver
    ]


# -- functions ------------------------------------------------------------------


@pytest.mark.parametrize("coroutine", [False, True], ids=["sync", "coroutine"])
def test_a_weak_function_fires_while_alive_and_goes_with_its_owner(
    signal: DjangoSignal, run: str, coroutine: bool
) -> None:
    calls: list[Any] = []
    receiver = make_receiver(calls, coroutine)
    signalbox.connect(signal, receiver, run=run)  # weak=True, the default
    collect()

    signal.send(sender="alive")
    assert calls == ["alive"]
    assert signal.has_listeners()

    receiver_ref = weakref.ref(receiver)
    del receiver
    collect()

    assert receiver_ref() is None  # nothing signalbox made kept it alive
    assert not signal.has_listeners()
    assert signal.send(sender="gone") == []
    assert calls == ["alive"]


def test_the_receiver_decorator_defaults_to_weak(
    signal: DjangoSignal, run: str
) -> None:
    calls: list[Any] = []

    @signalbox.receiver(signal, run=run, dispatch_uid="tests.lifetime.decorated")
    def decorated(sender: object, **kwargs: Any) -> None:
        calls.append(sender)

    collect()
    signal.send(sender="alive")
    del decorated
    collect()
    signal.send(sender="gone")

    assert calls == ["alive"]
    assert not signal.has_listeners()


@pytest.mark.parametrize("coroutine", [False, True], ids=["sync", "coroutine"])
def test_a_strong_function_outlives_every_other_reference(
    signal: DjangoSignal, run: str, coroutine: bool
) -> None:
    calls: list[Any] = []
    receiver = make_receiver(calls, coroutine)
    signalbox.connect(signal, receiver, run=run, weak=False)
    receiver_ref = weakref.ref(receiver)
    del receiver
    collect()

    signal.send(sender="still here")

    assert calls == ["still here"]
    assert receiver_ref() is not None
    assert signal.disconnect(receiver_ref())
    collect()
    assert receiver_ref() is None  # disconnecting let go of it


def test_a_new_receiver_connects_after_a_collected_one(
    signal: DjangoSignal, run: str
) -> None:
    """Django keys a connection by ``id(receiver)``, and a collected
    receiver's id is soon another function's: that one must still connect."""
    calls: list[Any] = []
    for number in range(20):
        receiver = make_receiver(calls)
        signalbox.connect(signal, receiver, run=run)
        signal.send(sender=number)
        del receiver  # freed at once: nothing holds it in a cycle

    assert calls == list(range(20))


# -- bound methods --------------------------------------------------------------


def test_a_weak_bound_method_lives_as_long_as_its_instance(
    signal: DjangoSignal, run: str
) -> None:
    """Nothing holds the bound method object itself: the instance decides."""
    calls: list[Any] = []
    listener = Listener(calls)
    signalbox.connect(signal, listener.on_signal, run=run)
    collect()

    signal.send(sender="alive")
    assert calls == ["alive"]

    listener_ref = weakref.ref(listener)
    del listener
    collect()

    assert listener_ref() is None
    assert not signal.has_listeners()
    signal.send(sender="gone")
    assert calls == ["alive"]


def test_a_strong_bound_method_keeps_its_instance(
    signal: DjangoSignal, run: str
) -> None:
    calls: list[Any] = []
    listener = Listener(calls)
    signalbox.connect(signal, listener.on_signal, run=run, weak=False)
    listener_ref = weakref.ref(listener)
    del listener
    collect()

    signal.send(sender="still here")

    assert calls == ["still here"]
    assert listener_ref() is not None
    assert signal.disconnect(listener_ref().on_signal)  # type: ignore[union-attr]


# -- the adapter itself -----------------------------------------------------------


def _adapter_of(signal: DjangoSignal) -> Adapter | None:
    """The object send() reports for the one receiver: signalbox's adapter, if
    it connected one (a plain inline receiver on its own Signal has none)."""
    [(connected, _)] = signal.send(sender="probe")
    return connected if isinstance(connected, Adapter) else None


def test_the_adapter_lives_exactly_as_long_as_a_weak_receiver(
    signal: DjangoSignal, run: str
) -> None:
    receiver = make_receiver([])
    signalbox.connect(signal, receiver, run=run)
    adapter = _adapter_of(signal)
    if adapter is None:
        pytest.skip("a plain inline receiver on signalbox's Signal has no adapter")
    assert adapter == receiver

    adapter_ref = weakref.ref(adapter)
    del adapter
    collect()
    assert adapter_ref() is not None  # the receiver is alive, so is its adapter

    del receiver
    collect()
    assert adapter_ref() is None


def test_the_adapter_of_a_strong_receiver_goes_when_disconnected(
    signal: DjangoSignal, run: str
) -> None:
    receiver = make_receiver([])
    signalbox.connect(signal, receiver, run=run, weak=False)
    adapter = _adapter_of(signal)
    if adapter is None:
        pytest.skip("a plain inline receiver on signalbox's Signal has no adapter")
    adapter_ref = weakref.ref(adapter)
    receiver_ref = weakref.ref(receiver)
    del adapter, receiver
    collect()
    assert adapter_ref() is not None

    assert signal.disconnect(receiver_ref())
    collect()
    assert adapter_ref() is None
    assert receiver_ref() is None


def test_connect_and_disconnect_cycles_leave_no_adapters_behind(
    signal: DjangoSignal, run: str
) -> None:
    """Code that disconnects a receiver for a while (a bulk load, a test
    fixture) and connects it again must not grow memory on every cycle."""
    receiver = make_receiver([])
    for _ in range(20):
        signalbox.connect(signal, receiver, run=run)
        assert signalbox.disconnect(signal, receiver)

    assert adapters_for(receiver) == []


def test_disconnecting_through_django_leaves_at_most_one_adapter_waiting(
    signal: DjangoSignal, run: str
) -> None:
    """``post_save.disconnect(f)`` reaches Django, not signalbox: the adapter
    it removed waits until ``f``'s next connect (or death) to be let go, so
    cycles never pile adapters up."""
    receiver = make_receiver([])
    for _ in range(20):
        signalbox.connect(signal, receiver, run=run)
        assert signal.disconnect(receiver)

    assert len(adapters_for(receiver)) <= 1
    assert not signal.has_listeners()


def test_the_route_cache_keeps_neither_receivers_nor_senders_alive() -> None:
    signal = signalbox.Signal()
    calls: list[Any] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append(type(sender).__name__)

    signal.connect(receiver)

    class Sender:
        pass

    sender = Sender()
    signal.send(sender=sender)
    signal.send(sender=sender)  # the second send uses the cached route
    sender_ref, receiver_ref = weakref.ref(sender), weakref.ref(receiver)
    del sender, receiver
    collect()

    assert sender_ref() is None
    assert receiver_ref() is None
    assert calls == ["Sender", "Sender"]


# -- deferred receivers and the transaction ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_receiver_sent_while_alive_runs_at_the_commit(signal: DjangoSignal) -> None:
    """Once sent, the pending call is the commit's: like any on_commit hook,
    it holds the receiver until it has run, then lets it go."""
    calls: list[Any] = []
    receiver = make_receiver(calls)
    signalbox.connect(signal, receiver, run="on_commit")
    receiver_ref = weakref.ref(receiver)

    with transaction.atomic():
        signal.send(sender="sent")
        del receiver
        collect()
        assert calls == []

    assert calls == ["sent"]
    collect()
    assert receiver_ref() is None
    assert not signal.has_listeners()


@pytest.mark.django_db(transaction=True)
def test_a_model_signal_receiver_goes_with_its_owner() -> None:
    calls: list[Any] = []

    def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        calls.append(instance.number)

    on_saved_ref = weakref.ref(on_saved)
    signalbox.connect(post_save, on_saved, sender=Order, run="on_commit")
    try:
        collect()
        with transaction.atomic():
            Order.objects.create(number="alive")
        assert calls == ["alive"]

        del on_saved
        collect()
        assert on_saved_ref() is None
        Order.objects.create(number="gone")
        assert calls == ["alive"]
    finally:
        if on_saved_ref() is not None:
            post_save.disconnect(on_saved_ref(), sender=Order)
