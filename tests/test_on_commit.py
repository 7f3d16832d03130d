"""run="on_commit" against real databases: commit, rollback, savepoints, aliases.

Every test here that is about *when* a receiver runs commits for real
(``transaction=True``; on both aliases the settings define where a test
uses two), so Django's own commit hooks decide, not a test double. The
receivers are connected to signalbox's :class:`~signalbox.Signal` and to a
plain :class:`django.dispatch.Signal` alike, and to Django's model signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import Signal as DjangoSignal

import signalbox
from tests.testapp.models import Note, Order

order_paid = signalbox.Signal()
"""A signalbox signal, sent by hand with whatever arguments a test needs."""

django_paid = DjangoSignal()
"""The same, as a plain Django signal: modes must not depend on the class."""

REAL_COMMITS = pytest.mark.django_db(transaction=True)
BOTH = pytest.mark.django_db(transaction=True, databases=["default", "other"])
FAILURES = "signalbox.observe.failures"


class Boom(Exception):
    """Raised by tests to roll a block back."""


@contextmanager
def rolled_back(using: str | None = None) -> Iterator[None]:
    """An atomic block that is rolled back: Boom is raised at its end."""
    try:
        with transaction.atomic(using=using):
            yield
            raise Boom
    except Boom:
        pass


@pytest.fixture(params=["signalbox", "django"])
def signal(request: pytest.FixtureRequest) -> DjangoSignal:
    """A hand-sent signal: signalbox's class, then Django's."""
    return order_paid if request.param == "signalbox" else django_paid


def recorder(ran: list[Any], name: str = "receiver") -> Callable[..., None]:
    """A receiver that notes its tag and whether a transaction was still open."""

    def receiver(sender: object, **kwargs: Any) -> None:
        using = kwargs.get("using") or "default"
        ran.append((kwargs.get("tag", name), connections[using].in_atomic_block))

    return receiver


# -- one database ------------------------------------------------------------


@REAL_COMMITS
def test_runs_after_the_commit_not_before(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    receiver = connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic():
        responses = signal.send(sender=Order, tag="paid")
        assert ran == []

    assert ran == [("paid", False)]
    # send() reports the receiver as connected, with no response yet.
    assert responses == [(receiver, None)]


@REAL_COMMITS
def test_runs_at_once_outside_a_transaction(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    signal.send(sender=Order, tag="now")

    assert ran == [("now", False)]


@REAL_COMMITS
def test_never_runs_after_a_rollback(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with rolled_back():
        Order.objects.create(number="1")
        signal.send(sender=Order, tag="rolled back")

    with transaction.atomic():
        transaction.set_rollback(True)
        signal.send(sender=Order, tag="set_rollback")

    assert ran == []
    assert not Order.objects.exists()


@REAL_COMMITS
def test_each_send_runs_once_in_order_with_other_commit_hooks(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order, tag="first")
        transaction.on_commit(lambda: ran.append(("hook", False)))
        signal.send(sender=Order, tag="second")

    assert ran == [("first", False), ("hook", False), ("second", False)]


@REAL_COMMITS
def test_inline_and_on_commit_receivers_on_one_signal(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran, "inline"))
    connect(signal, recorder(ran, "deferred"), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order)
        assert ran == [("inline", True)]

    assert ran == [("inline", True), ("deferred", False)]


# -- savepoints ----------------------------------------------------------------


@REAL_COMMITS
def test_a_rolled_back_savepoint_drops_what_was_sent_inside_it(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order, tag="outer, before")
        with rolled_back():
            Order.objects.create(number="inner")
            signal.send(sender=Order, tag="inner")
        signal.send(sender=Order, tag="outer, after")
        assert ran == []

    assert ran == [("outer, before", False), ("outer, after", False)]
    assert not Order.objects.exists()


@REAL_COMMITS
def test_a_released_savepoint_waits_for_the_outer_commit(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic():
        with transaction.atomic():
            signal.send(sender=Order, tag="inner")
        assert ran == []

    assert ran == [("inner", False)]

    ran.clear()
    with rolled_back(), transaction.atomic():
        signal.send(sender=Order, tag="inner, outer rolled back")

    assert ran == []


@REAL_COMMITS
def test_a_manual_savepoint_rollback_is_handled_as_django_handles_hooks(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    """Django keeps hooks registered after a manual ``savepoint()`` (only
    ``atomic()`` savepoints drop theirs); the receiver matches a plain hook."""
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order, tag="before")
        savepoint = _savepoint_create()
        signal.send(sender=Order, tag="after")
        transaction.on_commit(lambda: ran.append(("hook", False)))
        transaction.savepoint_rollback(savepoint)

    hook_kept = ("hook", False) in ran
    expected = [("before", False)]
    if hook_kept:
        expected += [("after", False), ("hook", False)]
    assert ran == expected


@REAL_COMMITS
def test_a_savepoint_rolled_back_after_a_database_error(
    connect: Callable[..., Any],
) -> None:
    """The pattern Django documents for IntegrityError inside atomic()."""
    ran: list[Any] = []
    connect(post_save, recorder(ran, "saved"), sender=Order, run="on_commit")
    first = Order.objects.create(number="first")
    ran.clear()

    with transaction.atomic():
        Order.objects.create(number="kept")
        try:
            with transaction.atomic():
                Order.objects.create(number="dropped")
                Order.objects.create(pk=first.pk, number="duplicate")
        except IntegrityError:
            pass

    assert ran == [("saved", False)]
    assert sorted(Order.objects.values_list("number", flat=True)) == ["first", "kept"]


def _savepoint_create() -> str:
    # Django 6.1 renamed savepoint() to savepoint_create(), deprecating the old name.
    create = getattr(transaction, "savepoint_create", None) or transaction.savepoint
    return str(create())


# -- Django's model signals ----------------------------------------------------


@REAL_COMMITS
def test_post_save_receives_what_django_sent(connect: Callable[..., Any]) -> None:
    seen: list[dict[str, Any]] = []

    def on_saved(sender: object, **kwargs: Any) -> None:
        seen.append({"sender": sender, **kwargs})

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with transaction.atomic():
        order = Order.objects.create(number="7")
        Note.objects.create(text="another sender")
        assert seen == []

    assert seen == [
        {
            "sender": Order,
            "signal": post_save,
            "instance": order,
            "created": True,
            "update_fields": None,
            "raw": False,
            "using": "default",
        }
    ]


@REAL_COMMITS
def test_post_save_receiver_sees_the_committed_row(
    connect: Callable[..., Any],
) -> None:
    """The receiver's query runs after the commit: the row is there for everyone."""
    found: list[Any] = []

    def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        found.append(
            (
                connections["default"].in_atomic_block,
                Order.objects.filter(pk=instance.pk, paid=True).exists(),
            )
        )

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with transaction.atomic():
        order = Order.objects.create(number="8")
        order.paid = True
        order.save(update_fields=["paid"])

    # Both saves' hooks run after the commit, so both see the final state.
    assert found == [(False, True), (False, True)]


@REAL_COMMITS
def test_pre_delete_runs_after_the_delete_commits(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []

    def on_delete(sender: object, instance: Order, **kwargs: Any) -> None:
        ran.append((instance.number, Order.objects.filter(number="9").exists()))

    connect(pre_delete, on_delete, sender=Order, run="on_commit")
    Order.objects.create(number="9")

    with rolled_back():
        Order.objects.get(number="9").delete()
    assert ran == []

    with transaction.atomic():
        Order.objects.get(number="9").delete()
        assert ran == []

    assert ran == [("9", False)]


@REAL_COMMITS
def test_duplicate_connects_run_once_and_disconnect_stops_it(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []
    receiver = recorder(ran, "saved")
    connect(post_save, receiver, sender=Order, run="on_commit")
    signalbox.connect(post_save, receiver, sender=Order, run="on_commit")

    Order.objects.create(number="1")
    assert ran == [("saved", False)]

    assert post_save.disconnect(receiver, sender=Order)
    Order.objects.create(number="2")
    assert ran == [("saved", False)]


def test_inline_on_a_django_signal_raises_as_django_does(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("inline")

    connect(signal, fails)

    with pytest.raises(Boom, match="inline"):
        signal.send(sender=Order)
    [(receiver, error)] = signal.send_robust(sender=Order)
    assert receiver == fails
    assert isinstance(error, Boom)


# -- two aliases ----------------------------------------------------------------


@BOTH
def test_a_save_on_other_runs_at_the_other_commit_not_the_default_one(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []
    connect(post_save, recorder(ran, "saved"), sender=Order, run="on_commit")

    with transaction.atomic(using="other"):
        with transaction.atomic():
            Order(number="1").save(using="other")
        assert ran == []  # "default" committed; the save was not on it
        assert connections["other"].in_atomic_block

    assert ran == [("saved", False)]
    assert Order.objects.using("other").filter(number="1").exists()
    assert not Order.objects.exists()


@BOTH
def test_a_save_on_other_runs_while_default_is_still_open(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []

    def on_saved(sender: object, **kwargs: Any) -> None:
        ran.append(
            (
                kwargs["using"],
                connections["default"].in_atomic_block,
                connections["other"].in_atomic_block,
            )
        )

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with transaction.atomic():
        with transaction.atomic(using="other"):
            Order(number="1").save(using="other")
            assert ran == []
        assert ran == [("other", True, False)]
        # "other" is in autocommit here: a save on it runs at once.
        Order(number="2").save(using="other")
        assert ran == [("other", True, False)] * 2

    assert ran == [("other", True, False)] * 2


@BOTH
def test_a_rollback_of_other_drops_it_while_default_commits(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []
    connect(post_save, recorder(ran, "saved"), sender=Order, run="on_commit")

    with transaction.atomic():
        Order.objects.create(number="on default")
        with rolled_back(using="other"):
            Order(number="on other").save(using="other")

    assert ran == [("saved", False)]  # the "default" save only
    assert list(Order.objects.values_list("number", flat=True)) == ["on default"]
    assert not Order.objects.using("other").exists()


@BOTH
def test_a_savepoint_rollback_on_other_drops_only_what_was_sent_inside(
    connect: Callable[..., Any],
) -> None:
    ran: list[str] = []

    def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        ran.append(instance.number)

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with transaction.atomic(using="other"):
        Order(number="outer").save(using="other")
        with rolled_back(using="other"):
            Order(number="inner").save(using="other")

    assert ran == ["outer"]


@BOTH
def test_post_delete_follows_its_using_argument(
    connect: Callable[..., Any],
) -> None:
    ran: list[Any] = []
    connect(post_delete, recorder(ran, "deleted"), sender=Order, run="on_commit")
    Order(number="1").save(using="other")

    with transaction.atomic(using="other"):
        Order.objects.using("other").get(number="1").delete()
        with transaction.atomic():
            pass
        assert ran == []

    assert ran == [("deleted", False)]


@BOTH
def test_a_hand_sent_using_argument_picks_the_alias(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    ran: list[Any] = []
    connect(signal, recorder(ran), run="on_commit")

    with transaction.atomic(using="other"):
        with transaction.atomic():
            signal.send(sender=Order, tag="on other", using="other")
        assert ran == []
        with transaction.atomic():
            signal.send(sender=Order, tag="no alias")
        assert ran == [("no alias", False)]

    assert ran == [("no alias", False), ("on other", False)]


# -- failures ---------------------------------------------------------------------


def _failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == FAILURES]


@REAL_COMMITS
def test_a_failing_receiver_is_logged_and_breaks_nothing(
    connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ran: list[Any] = []

    def explodes(sender: object, **kwargs: Any) -> None:
        raise Boom("receiver exploded")

    connect(post_save, recorder(ran, "before"), sender=Order, run="on_commit")
    connect(post_save, explodes, sender=Order, run="on_commit")
    connect(post_save, recorder(ran, "after"), sender=Order, run="on_commit")

    with transaction.atomic():
        Order.objects.create(number="1")
        transaction.on_commit(lambda: ran.append(("hook", False)))

    # The commit happened and every other receiver and hook ran, in order.
    assert Order.objects.filter(number="1").exists()
    assert ran == [("before", False), ("after", False), ("hook", False)]

    [record] = _failures(caplog)
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert f"{__name__}.{explodes.__qualname__}" in message
    assert "django.db.models.signals.post_save" in message
    assert "testapp.Order" in message
    assert "on_commit" in message
    assert "Boom: receiver exploded" in message
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)
    # signalbox reported it itself; Django's robust on_commit had nothing to log.
    assert not [r for r in caplog.records if r.name.startswith("django.db")]


@REAL_COMMITS
def test_a_failing_receiver_outside_a_transaction_does_not_break_the_send(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[Any] = []

    def explodes(sender: object, **kwargs: Any) -> None:
        raise Boom("at once")

    connect(signal, explodes, run="on_commit")
    connect(signal, recorder(ran), run="on_commit")

    responses = signal.send(sender=Order, tag="sent")

    assert ran == [("sent", False)]
    assert [response for _, response in responses] == [None, None]
    [record] = _failures(caplog)
    assert explodes.__qualname__ in record.getMessage()
    assert "Boom: at once" in record.getMessage()


# -- pytest-django's captured callbacks ----------------------------------------


@pytest.mark.django_db(databases=["default", "other"])
def test_captured_callbacks_run_the_receiver_once(
    connect: Callable[..., Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """In a test wrapped in a transaction, the usual way to see them run."""
    ran: list[str] = []

    def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        ran.append(instance.number)

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Order.objects.create(number="default")
        assert ran == []
    assert len(callbacks) == 1
    assert ran == ["default"]

    with django_capture_on_commit_callbacks(using="other", execute=True) as other:
        Order(number="other").save(using="other")
        Order.objects.create(number="not captured here")
    assert len(other) == 1
    assert ran == ["default", "other"]
