"""signalbox.Signal's asend/asend_robust must behave like Django's.

As in ``test_dropin.py``, every test runs against ``django.dispatch.Signal``
and against ``signalbox.Signal``. Django 5.2 and 6.x schedule receivers
differently inside ``asend()`` (5.2 gathers the synchronous and coroutine
receivers together; 6.x runs the synchronous ones first, then the coroutines
in a TaskGroup), so tests that depend on scheduling run the same scenario on
Django's class and on the class under test and require the same outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from django.dispatch import Signal as DjangoSignal

import signalbox

SignalClass = type[DjangoSignal]


@pytest.fixture(params=[DjangoSignal, signalbox.Signal], ids=["django", "signalbox"])
def signal_class(request: pytest.FixtureRequest) -> SignalClass:
    return request.param


@pytest.fixture
def signal(signal_class: SignalClass) -> DjangoSignal:
    return signal_class()


async def isolated(
    scenario: Callable[[SignalClass], Awaitable[Any]], cls: SignalClass
) -> Any:
    """Run ``scenario(cls)`` in its own task, with a fresh, empty context."""
    task = asyncio.get_running_loop().create_task(
        scenario(cls), context=contextvars.Context()
    )
    return await task


async def same_as_django(
    signal_class: SignalClass, scenario: Callable[[SignalClass], Awaitable[Any]]
) -> None:
    expected = await isolated(scenario, DjangoSignal)
    actual = await isolated(scenario, signal_class)
    assert actual == expected


class Sender:
    pass


class Boom(Exception):
    pass


class FatalBoom(BaseException):
    pass


def sync_echo(sender, value=None, **kwargs):
    return ("sync", value)


async def async_echo(sender, value=None, **kwargs):
    return ("async", value)


async def other_async_echo(sender, value=None, **kwargs):
    await asyncio.sleep(0)
    return ("other-async", value)


# -- results ------------------------------------------------------------------


async def test_asend_without_receivers(signal):
    assert await signal.asend(Sender) == []
    assert await signal.asend_robust(Sender, value=1) == []


async def test_asend_returns_sync_then_async_in_connection_order(signal):
    async def slow_first(sender, **kwargs):
        await asyncio.sleep(0.01)
        return "slow"

    signal.connect(slow_first)
    signal.connect(sync_echo)
    signal.connect(async_echo)
    signal.connect(other_async_echo)
    for method in (signal.asend, signal.asend_robust):
        responses = await method(Sender, value=1)
        assert responses == [
            (sync_echo, ("sync", 1)),
            (slow_first, "slow"),
            (async_echo, ("async", 1)),
            (other_async_echo, ("other-async", 1)),
        ]
        assert isinstance(responses, list)
        assert all(isinstance(pair, tuple) for pair in responses)


@pytest.mark.parametrize("connected", ["sync", "async", "both"])
async def test_asend_passes_signal_sender_and_named_arguments(signal, connected):
    seen = []

    def sync_receiver(**kwargs):
        seen.append(("sync", kwargs))

    async def async_receiver(**kwargs):
        seen.append(("async", kwargs))

    if connected in ("sync", "both"):
        signal.connect(sync_receiver)
    if connected in ("async", "both"):
        signal.connect(async_receiver)
    await signal.asend(Sender, a=1)
    await signal.asend_robust(sender=None, b=2)
    expected = []
    for arguments in (
        {"signal": signal, "sender": Sender, "a": 1},
        {"signal": signal, "sender": None, "b": 2},
    ):
        if connected in ("sync", "both"):
            expected.append(("sync", arguments))
        if connected in ("async", "both"):
            expected.append(("async", arguments))
    assert sorted(seen, key=repr) == sorted(expected, key=repr)


async def test_asend_sender_filter(signal):
    other = Sender()
    signal.connect(sync_echo, sender=Sender)
    signal.connect(async_echo, sender=other)
    signal.connect(other_async_echo)
    assert await signal.asend(Sender, value=1) == [
        (sync_echo, ("sync", 1)),
        (other_async_echo, ("other-async", 1)),
    ]
    assert await signal.asend(other, value=2) == [
        (async_echo, ("async", 2)),
        (other_async_echo, ("other-async", 2)),
    ]
    assert await signal.asend(None, value=3) == [(other_async_echo, ("other-async", 3))]
    assert signal.has_listeners(other)


async def test_asend_on_a_caching_signal(signal_class):
    signal = signal_class(use_caching=True)
    assert await signal.asend(Sender, value=0) == []
    signal.connect(async_echo, sender=Sender)
    signal.connect(sync_echo, sender=Sender)
    assert await signal.asend(Sender, value=1) == [
        (sync_echo, ("sync", 1)),
        (async_echo, ("async", 1)),
    ]
    assert await signal.asend(Sender(), value=1) == []
    signal.disconnect(async_echo, sender=Sender)
    assert await signal.asend_robust(Sender, value=2) == [(sync_echo, ("sync", 2))]


async def test_asend_same_receiver_for_two_senders(signal):
    first, second = Sender(), Sender()
    signal.connect(async_echo, sender=first)
    signal.connect(async_echo, sender=second)
    assert await signal.asend(first, value=1) == [(async_echo, ("async", 1))]
    assert signal.disconnect(async_echo, sender=first) is True
    assert await signal.asend(first, value=1) == []
    assert await signal.asend(second, value=2) == [(async_echo, ("async", 2))]


# -- where and how receivers run ------------------------------------------------


async def test_asend_runs_sync_receivers_off_the_loop_thread(signal):
    threads = []

    def first(**kwargs):
        threads.append(threading.get_ident())

    def second(**kwargs):
        threads.append(threading.get_ident())

    async def coroutine(**kwargs):
        threads.append(threading.get_ident())

    signal.connect(first)
    signal.connect(coroutine)
    signal.connect(second)
    await signal.asend(Sender)
    loop_thread = threading.get_ident()
    sync_threads = [threads[i] for i in range(3) if threads[i] != loop_thread]
    assert len(sync_threads) == 2
    assert sync_threads[0] == sync_threads[1]
    assert threads.count(loop_thread) == 1


async def test_asend_runs_coroutine_receivers_concurrently(signal):
    first_started = asyncio.Event()
    second_started = asyncio.Event()

    async def first(**kwargs):
        first_started.set()
        await asyncio.wait_for(second_started.wait(), timeout=2)
        return "first"

    async def second(**kwargs):
        second_started.set()
        await asyncio.wait_for(first_started.wait(), timeout=2)
        return "second"

    signal.connect(first)
    signal.connect(second)
    assert await signal.asend(Sender) == [(first, "first"), (second, "second")]
    first_started.clear()
    second_started.clear()
    assert await signal.asend_robust(Sender) == [(first, "first"), (second, "second")]


async def test_asend_sync_and_coroutine_receivers_overlap(signal_class):
    # 5.2 runs the two groups at the same time; 6.x the sync group first.
    async def scenario(cls):
        sig = cls()
        released = threading.Event()

        def waits(**kwargs):
            return released.wait(timeout=0.15)

        async def releases(**kwargs):
            released.set()
            return "released"

        sig.connect(waits)
        sig.connect(releases)
        return [value for _, value in await sig.asend(Sender)]

    await same_as_django(signal_class, scenario)


async def test_asend_coroutine_receiver_task(signal_class):
    # Django runs each coroutine receiver in a task of its own (gather in 5.2,
    # a TaskGroup in 6.x), never in the task that awaits asend().
    async def scenario(cls):
        sig = cls()
        tasks = []

        async def where(**kwargs):
            tasks.append(asyncio.current_task())

        sig.connect(where)
        await sig.asend(Sender)
        await sig.asend_robust(Sender)
        here = asyncio.current_task()
        return [task is here for task in tasks]

    await same_as_django(signal_class, scenario)


async def test_send_from_a_running_loop(signal_class):
    async def scenario(cls):
        sig = cls()
        calls = []

        def sync_receiver(**kwargs):
            calls.append("sync")

        async def async_receiver(**kwargs):
            calls.append("async")

        sig.connect(sync_receiver)
        only_sync = sig.send(Sender)
        sig.connect(async_receiver)
        outcome = []
        for method in (sig.send, sig.send_robust):
            try:
                method(Sender)
            except Exception as err:
                outcome.append(type(err))
        return [value for _, value in only_sync], outcome, calls

    await same_as_django(signal_class, scenario)


# -- errors ---------------------------------------------------------------------


async def test_asend_propagates_a_sync_receivers_error(signal):
    def failing(**kwargs):
        raise Boom("sync failure")

    signal.connect(failing)
    with pytest.raises(Boom, match="sync failure"):
        await signal.asend(Sender)


async def test_asend_propagates_a_coroutine_receivers_error(signal):
    async def failing(**kwargs):
        raise Boom("async failure")

    signal.connect(sync_echo)
    signal.connect(failing)
    with pytest.raises(Boom, match="async failure"):
        await signal.asend(Sender)


async def test_asend_stops_sync_receivers_at_first_error(signal):
    calls = []

    def failing(**kwargs):
        calls.append("failing")
        raise Boom

    def after(**kwargs):
        calls.append("after")

    signal.connect(failing)
    signal.connect(after)
    with pytest.raises(Boom):
        await signal.asend(Sender)
    assert calls == ["failing"]


async def test_asend_sync_error_and_coroutine_receivers(signal_class):
    # Whether the coroutine receivers still run once a sync receiver has
    # failed depends on the Django version; it must match Django's.
    async def scenario(cls):
        sig = cls()
        ran = []

        def failing(**kwargs):
            raise Boom

        async def coroutine(**kwargs):
            ran.append("coroutine")

        sig.connect(failing)
        sig.connect(coroutine)
        try:
            await sig.asend(Sender)
        except Boom:
            outcome = "raised"
        else:
            outcome = "returned"
        await asyncio.sleep(0.02)
        return outcome, ran

    await same_as_django(signal_class, scenario)


async def test_asend_with_two_failing_coroutine_receivers(signal_class):
    async def scenario(cls):
        sig = cls()

        async def fails_first(**kwargs):
            raise Boom("one")

        async def fails_second(**kwargs):
            await asyncio.sleep(0)
            raise ValueError("two")

        sig.connect(fails_first)
        sig.connect(fails_second)
        try:
            await sig.asend(Sender)
        except BaseException as err:
            inner = getattr(err, "exceptions", ())
            return type(err), sorted(type(e).__name__ for e in inner)
        return None

    await same_as_django(signal_class, scenario)


async def test_asend_robust_returns_errors_and_logs_them(signal, caplog):
    calls = []

    def sync_failing(**kwargs):
        calls.append("sync_failing")
        raise ValueError("sync robust")

    def sync_fine(**kwargs):
        calls.append("sync_fine")
        return "sync ok"

    async def async_failing(**kwargs):
        calls.append("async_failing")
        raise Boom("async robust")

    async def async_fine(**kwargs):
        calls.append("async_fine")
        return "async ok"

    signal.connect(sync_failing)
    signal.connect(async_failing)
    signal.connect(sync_fine)
    signal.connect(async_fine)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        responses = await signal.asend_robust(Sender)
    assert sorted(calls) == ["async_failing", "async_fine", "sync_failing", "sync_fine"]
    assert [r for r, _ in responses] == [
        sync_failing,
        sync_fine,
        async_failing,
        async_fine,
    ]
    assert isinstance(responses[0][1], ValueError)
    assert responses[0][1].__traceback__ is not None
    assert responses[1][1] == "sync ok"
    assert isinstance(responses[2][1], Boom)
    assert responses[3][1] == "async ok"
    records = [r for r in caplog.records if r.name == "django.dispatch"]
    local = "test_asend_robust_returns_errors_and_logs_them.<locals>"
    assert sorted((r.levelno, r.getMessage()) for r in records) == [
        (
            logging.ERROR,
            f"Error calling {local}.async_failing in Signal.send_robust() "
            "(async robust)",
        ),
        (
            logging.ERROR,
            f"Error calling {local}.sync_failing in Signal.send_robust() (sync robust)",
        ),
    ]
    logged = sorted(id(r.exc_info[1]) for r in records)
    assert logged == sorted([id(responses[0][1]), id(responses[2][1])])


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_asend_robust_lets_base_exceptions_through(signal_class, kind):
    async def scenario(cls):
        sig = cls()

        def sync_fatal(**kwargs):
            raise FatalBoom

        async def async_fatal(**kwargs):
            raise FatalBoom

        sig.connect(sync_fatal if kind == "sync" else async_fatal)
        try:
            await sig.asend_robust(Sender)
        except BaseException as err:
            return type(err)
        return None

    await same_as_django(signal_class, scenario)


async def test_asend_sync_receiver_without_kwargs(signal, settings):
    settings.DEBUG = False

    def no_kwargs(sender):
        return None

    signal.connect(no_kwargs)
    with pytest.raises(TypeError, match="signal"):
        await signal.asend(Sender)
    responses = await signal.asend_robust(Sender)
    assert responses[0][0] is no_kwargs
    assert isinstance(responses[0][1], TypeError)


async def test_asend_robust_coroutine_receiver_without_kwargs(signal, settings):
    # (Not asend(): Django 5.2's asend() then leaves a coroutine unawaited.)
    settings.DEBUG = False

    async def no_kwargs(sender):
        return None

    signal.connect(no_kwargs)
    signal.connect(async_echo)
    responses = await signal.asend_robust(Sender, value=1)
    assert [r for r, _ in responses] == [no_kwargs, async_echo]
    assert isinstance(responses[0][1], TypeError)
    assert responses[1][1] == ("async", 1)


# -- context variables ----------------------------------------------------------

_variable: contextvars.ContextVar[str] = contextvars.ContextVar(
    "dropin_async", default="unset"
)


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
@pytest.mark.parametrize(
    "shape", ["sync-only", "one-async", "two-async", "sync-and-async"]
)
async def test_asend_context_changes_made_by_receivers(signal_class, method, shape):
    # Whether a receiver's change to a context variable is visible to the code
    # that awaited asend() differs between Django versions; it must not differ
    # between Django and signalbox.
    async def scenario(cls):
        sig = cls()

        def sync_setter(**kwargs):
            _variable.set("set-by-sync")

        async def async_setter(**kwargs):
            _variable.set("set-by-async")

        async def bystander(**kwargs):
            return None

        if shape in ("sync-only", "sync-and-async"):
            sig.connect(sync_setter)
        if shape != "sync-only":
            sig.connect(async_setter)
        if shape == "two-async":
            sig.connect(bystander)
        await getattr(sig, method)(Sender)
        return _variable.get()

    await same_as_django(signal_class, scenario)


async def test_receivers_see_the_callers_context(signal):
    _variable.set("from-caller")
    seen = []

    def sync_reader(**kwargs):
        seen.append(("sync", _variable.get()))

    async def async_reader(**kwargs):
        seen.append(("async", _variable.get()))

    signal.connect(sync_reader)
    signal.connect(async_reader)
    await signal.asend(Sender)
    await signal.asend_robust(Sender)
    assert sorted(seen) == [
        ("async", "from-caller"),
        ("async", "from-caller"),
        ("sync", "from-caller"),
        ("sync", "from-caller"),
    ]


# -- connections changing, garbage collection -----------------------------------


async def test_asend_connect_and_disconnect_during_send(signal):
    calls = []

    async def late(**kwargs):
        calls.append("late")

    def changer(**kwargs):
        calls.append("changer")
        signal.disconnect(changer)
        signal.disconnect(victim)
        signal.connect(late)

    async def victim(**kwargs):
        calls.append("victim")

    signal.connect(changer)
    signal.connect(victim)
    first = await signal.asend(Sender)
    assert [r for r, _ in first] == [changer, victim]
    assert sorted(calls) == ["changer", "victim"]
    calls.clear()
    assert await signal.asend(Sender) == [(late, None)]
    assert calls == ["late"]


async def test_asend_weak_coroutine_receiver_is_dropped(signal):
    async def temporary(**kwargs):
        return "temporary"

    signal.connect(temporary)
    signal.connect(async_echo)
    assert len(await signal.asend(Sender)) == 2
    ref = weakref.ref(temporary)
    del temporary
    await asyncio.sleep(0)  # let the loop drop its last look at the results
    gc.collect()
    assert ref() is None
    assert await signal.asend(Sender, value=1) == [(async_echo, ("async", 1))]


class Holder:
    async def method(self, **kwargs):
        return "method"


async def test_asend_weak_bound_coroutine_method_is_dropped(signal):
    holder = Holder()
    signal.connect(holder.method)
    assert await signal.asend(Sender) == [(holder.method, "method")]
    del holder
    await asyncio.sleep(0)
    gc.collect()
    assert await signal.asend(Sender) == []
    assert not signal.has_listeners()


async def test_asend_strong_coroutine_receiver_is_kept(signal):
    def make():
        async def strongly_held(**kwargs):
            return "kept"

        return strongly_held

    function = make()
    signal.connect(function, weak=False)
    ref = weakref.ref(function)
    del function
    gc.collect()
    assert ref() is not None
    assert [value for _, value in await signal.asend(Sender)] == ["kept"]
