"""signalbox.testing: capture(), drain(), the assertions and helpers.

The first two classes are issue 14's "done means": one project-style test,
written only against signalbox.testing, passing under TestCase and under
TransactionTestCase, and failing with a clear message when the receiver was
not delivered or an argument cannot travel.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import types
import unittest
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_save
from django.test import TestCase, TransactionTestCase

import signalbox
from signalbox import CodecError, Retry, outbox, testing
from signalbox._states import State
from signalbox.models import Delivery
from signalbox.testing import _wrapping as testing_wrapping
from tests.testapp.models import Note, Order

order_paid = signalbox.Signal()
order_refunded = signalbox.Signal()
NO_WAIT = signalbox.Backoff(base=timedelta(0), cap=timedelta(0))
LONG_WAIT = signalbox.Backoff(base=timedelta(hours=1), cap=timedelta(hours=1))


def write_note(sender: object, order: Order, **kwargs: Any) -> None:
    Note.objects.create(text=f"paid {order.number}")


def note_on_commit(sender: object, order: Order, **kwargs: Any) -> None:
    Note.objects.create(text=f"committed {order.number}")


def audit(sender: object, **kwargs: Any) -> str:
    return "audited"


class PaymentRefused(Exception):
    pass


def refuse(sender: object, **kwargs: Any) -> None:
    raise PaymentRefused("the provider said no")


attempts: list[int] = []


def fail_twice(sender: object, **kwargs: Any) -> None:
    delivery = signalbox.current_delivery()
    assert delivery is not None
    attempts.append(delivery.attempt)
    if delivery.attempt < 3:
        raise PaymentRefused(f"attempt {delivery.attempt}")
    Note.objects.create(text="third time lucky")


def later(sender: object, **kwargs: Any) -> None:
    attempts.append(0)
    if len(attempts) == 1:
        raise Retry(delay=timedelta(hours=1))
    Note.objects.create(text="an hour later")


def snooze(sender: object, **kwargs: Any) -> None:
    raise Retry(delay=timedelta(minutes=10))


class _DoneMeans:
    """The test a project writes, against signalbox.testing only."""

    def test_a_send_in_atomic_is_delivered_by_drain(self) -> None:
        order = Order.objects.create(number="A1")
        with (
            testing.connected_to(write_note, order_paid, run="background"),
            testing.capture() as sent,
        ):
            with transaction.atomic():
                order_paid.send(sender=Order, order=order)
            [ran] = testing.drain()

        assert ran.outcome is testing.Outcome.COMPLETED
        assert Note.objects.filter(text="paid A1").exists()
        reached = testing.assert_delivered(write_note, sent, order=order)
        assert reached.delivery_id == ran.id
        assert testing.assert_sent(order_paid, sent, sender=Order).kwargs == {
            "order": order
        }

    def test_it_fails_clearly_when_the_receiver_was_not_delivered(self) -> None:
        order = Order.objects.create(number="A2")
        with (
            testing.connected_to(write_note, order_refunded, run="background"),
            testing.capture() as sent,
        ):
            with transaction.atomic():
                order_paid.send(sender=Order, order=order)
            assert testing.drain() == []
            with pytest.raises(AssertionError) as failed:
                testing.assert_delivered(write_note, order=order)

        message = str(failed.value)
        assert message.startswith(
            "assert_delivered(tests.test_testing_kit.write_note, order=<Order: A2>) "
            "failed: no send reached it.\n1 send(s) recorded:\n"
            "  1. tests.test_testing_kit.order_paid(sender=<class "
        )
        assert message.endswith("order=<Order: A2>)\n       reached no receiver")
        assert not Note.objects.exists()
        assert sent.sends(order_paid)

    def test_it_fails_clearly_when_an_argument_cannot_travel(self) -> None:
        order = Order.objects.create(number="A3")
        with (
            testing.connected_to(write_note, order_paid, run="background"),
            pytest.raises(CodecError) as refused,
            transaction.atomic(),
        ):
            order_paid.send(sender=Order, order=order, card=object())

        assert refused.value.argument == "card"
        assert refused.value.receiver == "tests.test_testing_kit.write_note"
        assert "exclude=['card']" in str(refused.value)
        assert "prepare=" in str(refused.value)
        assert not Delivery.objects.exists()

    def test_on_commit_receivers_have_run_once_drain_returns(self) -> None:
        order = Order.objects.create(number="A4")
        with (
            testing.connected_to(note_on_commit, order_paid, run="on_commit"),
            testing.capture() as sent,
        ):
            with transaction.atomic():
                order_paid.send(sender=Order, order=order)
            testing.drain()
            [reached] = sent.deliveries(note_on_commit)

        assert Note.objects.filter(text="committed A4").exists()
        assert (reached.happened, reached.after_commit) == (testing.Happened.RAN, True)

    def test_a_receivers_error_is_raised_by_drain_with_its_delivery(self) -> None:
        with testing.connected_to(refuse, order_paid, run="background", retries=2):
            order_paid.send(sender=None)
            with pytest.raises(PaymentRefused) as raised:
                testing.drain()

            assert raised.value.__notes__ == [
                "signalbox.testing.drain(): delivery "
                f"{Delivery.objects.get().id} of tests.test_testing_kit.order_paid "
                "to tests.test_testing_kit.refuse, attempt 1 of 2, raised this; its "
                "row is now retryable. Pass raise_errors=False to collect outcomes "
                "instead."
            ]
            [last] = testing.drain(raise_errors=False, until="empty")
        assert (last.outcome, last.reason) == (testing.Outcome.DEAD, "max_attempts")
        assert isinstance(last.error, PaymentRefused)


class DoneMeansInATestCase(_DoneMeans, TestCase):
    pass


class DoneMeansInATransactionTestCase(_DoneMeans, TransactionTestCase):
    pass


class DrainInATestCase(TestCase):
    def setUp(self) -> None:
        attempts.clear()

    def test_drain_logs_no_warning_and_sees_uncommitted_rows(self) -> None:
        with testing.connected_to(write_note, order_paid, run="background"):
            order_paid.send(sender=Order, order=Order.objects.create(number="B1"))
            with self.assertNoLogs("signalbox", level="WARNING"):
                [ran] = testing.drain()
        assert ran.outcome is testing.Outcome.COMPLETED
        assert Delivery.objects.get().state == State.COMPLETED

    def test_drain_inside_the_tests_own_atomic_block_says_why_not(self) -> None:
        with (
            testing.connected_to(write_note, order_paid, run="background"),
            transaction.atomic(),
        ):
            order_paid.send(sender=Order, order=Order.objects.create(number="B2"))
            with pytest.raises(testing.NotCommitted) as refused:
                testing.drain()
        assert str(refused.value) == (
            "drain() was called inside a transaction.atomic() block on database "
            "'default': what was sent in it is not committed yet, so no worker "
            "could run it. Call drain() after the block."
        )

    def test_capture_runs_on_commit_receivers_on_the_way_out(self) -> None:
        with testing.connected_to(note_on_commit, order_paid, run="on_commit"):
            with testing.capture() as sent, transaction.atomic():
                order_paid.send(sender=Order, order=Order.objects.create(number="B3"))
            [reached] = sent.deliveries(note_on_commit)
        assert reached.after_commit
        assert Note.objects.filter(text="committed B3").exists()

    def test_a_rolled_back_send_delivers_nothing(self) -> None:
        with (
            testing.connected_to(write_note, order_paid, run="background"),
            testing.connected_to(note_on_commit, order_paid, run="on_commit"),
        ):
            try:
                with transaction.atomic():
                    order = Order.objects.create(number="B4")
                    order_paid.send(sender=Order, order=order)
                    raise PaymentRefused
            except PaymentRefused:
                pass
            assert testing.drain() == []
        assert not Note.objects.exists()

    def test_until_empty_follows_retries_without_waiting(self) -> None:
        with testing.connected_to(
            fail_twice, order_paid, run="background", retries=3, backoff=LONG_WAIT
        ):
            order_paid.send(sender=None)
            [first] = testing.drain(raise_errors=False)
            assert first.outcome is testing.Outcome.RETRYING
            assert testing.drain() == []  # the next attempt is an hour away
            ran = testing.drain(raise_errors=False, until="empty")
        assert [r.outcome for r in ran] == [
            testing.Outcome.RETRYING,
            testing.Outcome.COMPLETED,
        ]
        assert attempts == [1, 2, 3]

    def test_now_runs_what_falls_due_by_then(self) -> None:
        with testing.connected_to(later, order_paid, run="background"):
            order_paid.send(sender=None)
            [first] = testing.drain()
            assert first.outcome is testing.Outcome.RETRYING
            assert testing.drain(now=timedelta(minutes=59)) == []
            [second] = testing.drain(now=timedelta(minutes=61))
        assert second.outcome is testing.Outcome.COMPLETED
        assert Note.objects.filter(text="an hour later").exists()

    def test_a_retry_that_never_ends_is_stopped_with_a_reason(self) -> None:
        with testing.connected_to(snooze, order_paid, run="background"):
            order_paid.send(sender=None)
            assert testing.drain()[0].outcome is testing.Outcome.RETRYING
            with pytest.raises(signalbox.SignalboxError, match="keeps raising Retry"):
                testing.drain(until="empty")

    def test_a_payload_that_cannot_be_decoded_fails_the_drain(self) -> None:
        with testing.connected_to(write_note, order_paid, run="background"):
            outbox.enqueue(
                [
                    outbox.NewDelivery(
                        signal="tests.test_testing_kit.order_paid",
                        receiver="tests.test_testing_kit.write_note",
                        payload={"forged": True},
                    )
                ],
                using="default",
            )
            with pytest.raises(testing.DeliveryFailed) as failed:
                testing.drain()
        assert failed.value.ran.reason == "decode_error"
        assert "is dead (decode_error) without its receiver running" in str(
            failed.value
        )


class CaptureRecords(TestCase):
    def test_each_receivers_mode_and_what_happened(self) -> None:
        with (
            testing.connected_to(audit, order_paid),
            testing.connected_to(note_on_commit, order_paid, run="on_commit"),
            testing.connected_to(write_note, order_paid, run="background"),
            testing.capture() as sent,
        ):
            order = Order.objects.create(number="C1")
            responses = order_paid.send(sender=Order, order=order)

        assert [receiver for receiver, _ in responses] == [
            audit,
            note_on_commit,
            write_note,
        ]
        assert responses[0][1] == "audited"
        [send] = sent.sent
        assert [
            (r.key.rsplit(".", 1)[1], r.run, r.happened) for r in send.receivers
        ] == [
            ("audit", "inline", testing.Happened.RAN),
            ("note_on_commit", "on_commit", testing.Happened.RAN),
            ("write_note", "background", testing.Happened.WRITTEN),
        ]
        assert send.receivers[0].response == "audited"
        assert send.receivers[2].delivery_id == Delivery.objects.get().id
        assert send.receivers[1].after_commit  # run by capture's exit

    def test_a_django_signal_is_recorded_once_signalbox_has_a_receiver_on_it(
        self,
    ) -> None:
        with testing.capture() as before:
            Order.objects.create(number="C2")
        assert before.sent == []
        with (
            testing.connected_to(audit, post_save, sender=Order),
            testing.capture() as sent,
        ):
            order = Order.objects.create(number="C3")
        testing.assert_sent(post_save, sent, sender=Order, instance=order, created=True)
        testing.assert_delivered(audit, sent, instance=order)

    def test_an_inline_receivers_error_is_recorded_and_propagates(self) -> None:
        with (
            testing.connected_to(refuse, order_paid),
            testing.capture() as sent,
            pytest.raises(PaymentRefused),
        ):
            order_paid.send(sender=None)
        [reached] = sent.deliveries(refuse)
        assert reached.happened is testing.Happened.RAISED
        assert isinstance(reached.error, PaymentRefused)

    def test_assert_not_delivered_lists_the_sends_that_reached_it(self) -> None:
        with (
            testing.connected_to(audit, order_paid),
            testing.capture() as sent,
        ):
            order_paid.send(sender=None, amount=3)
            testing.assert_not_delivered(audit, amount=4)
            with pytest.raises(AssertionError) as failed:
                testing.assert_not_delivered(audit)
        assert str(failed.value) == (
            "assert_not_delivered(tests.test_testing_kit.audit) failed: once a send "
            "reached it:\n"
            "  1. tests.test_testing_kit.order_paid(sender=None, amount=3)\n"
            "       tests.test_testing_kit.audit (run='inline'): ran"
        )
        assert sent.sent

    def test_assert_sent_says_when_the_arguments_differ(self) -> None:
        with testing.capture():
            order_paid.send(sender=None, amount=3)
            with pytest.raises(AssertionError) as failed:
                testing.assert_sent(order_paid, amount=4)
        assert str(failed.value).startswith(
            "assert_sent(tests.test_testing_kit.order_paid, amount=4) failed: it "
            "was sent once, with other arguments.\n"
        )

    def test_the_assertions_need_a_capture(self) -> None:
        with pytest.raises(RuntimeError, match="needs a capture"):
            testing.assert_sent(order_paid)

    def test_sends_outside_any_capture_are_not_wrapped(self) -> None:
        send = signalbox.Signal.send
        with testing.capture():
            assert signalbox.Signal.send is not send
        assert signalbox.Signal.send is send


class Inline(TestCase):
    @testing.run_background_inline
    def test_background_receivers_run_at_the_send(self) -> None:
        with testing.connected_to(write_note, order_paid, run="background"):
            order_paid.send(sender=Order, order=Order.objects.create(number="D1"))
            assert Note.objects.filter(text="paid D1").exists()
        assert Delivery.objects.get().state == State.COMPLETED

    def test_inline_still_refuses_what_cannot_travel(self) -> None:
        with (
            testing.run_background_inline(),
            testing.connected_to(write_note, order_paid, run="background"),
            pytest.raises(CodecError),
        ):
            order_paid.send(
                sender=Order, order=Order.objects.create(number="D2"), x={1j}
            )

    def test_inline_raises_the_receivers_error_from_the_send(self) -> None:
        with (
            testing.run_background_inline() as inline,
            testing.connected_to(refuse, order_paid, run="background"),
            pytest.raises(PaymentRefused),
        ):
            order_paid.send(sender=None)
        assert inline.runs[0].outcome is testing.Outcome.RETRYING

    async def test_inline_from_asend(self) -> None:
        with testing.connected_to(audit, order_paid), testing.capture() as sent:
            responses = await order_paid.asend(sender=None)
        assert responses == [(audit, "audited")]
        testing.assert_delivered(audit, sent)


class Helpers(TestCase):
    def test_muted_silences_a_signal_and_puts_it_back(self) -> None:
        with testing.connected_to(audit, order_paid):
            with testing.muted(order_paid), testing.capture() as sent:
                assert order_paid.send(sender=None) == []
                assert not order_paid.has_listeners()
            assert sent.sent[0].receivers == []
            assert order_paid.send(sender=None) == [(audit, "audited")]

    def test_muted_silences_djangos_own_signals_too(self) -> None:
        with (
            testing.connected_to(write_note, post_save, sender=Order, run="background"),
            testing.muted(post_save),
        ):
            Order.objects.create(number="H1")
            assert not post_save.has_listeners(Order)
        assert not Delivery.objects.exists()

    def test_connected_to_disconnects_however_the_block_ends(self) -> None:
        def connect_and_fail() -> None:
            with testing.connected_to(audit, order_paid, dispatch_uid="audit-once"):
                assert order_paid.has_listeners()
                raise PaymentRefused

        with pytest.raises(PaymentRefused):
            connect_and_fail()
        assert not order_paid.has_listeners()

    def test_connected_to_checks_options_as_connect_does(self) -> None:
        with (
            pytest.raises(signalbox.ReceiverError, match="takes no options"),
            testing.connected_to(audit, order_paid, retries=3),
        ):
            pass


def test_the_decorators_wrap_a_coroutine_function_while_it_runs() -> None:
    seen: list[object] = []

    async def check() -> str:
        await asyncio.sleep(0)
        seen.append(testing_wrapping.innermost())
        return "ran"

    for decorated in (
        testing.run_background_inline(check),
        testing.run_background_inline()(check),
        testing.capture()(check),
    ):
        assert asyncio.run(decorated()) == "ran"
    assert all(capture is not None for capture in seen)
    assert [capture.background for capture in seen] == ["inline", "inline", "manual"]
    assert testing_wrapping.innermost() is None


def test_capture_refuses_an_unknown_background_mode() -> None:
    with pytest.raises(ValueError, match="use 'manual'"):
        testing.capture(background="eager")  # type: ignore[arg-type]


@pytest.mark.django_db
def test_an_on_commit_receivers_error_is_raised_by_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with testing.connected_to(refuse, order_paid, run="on_commit"):
        order_paid.send(sender=None)
        with pytest.raises(PaymentRefused) as raised:
            testing.drain()
    assert "an on-commit receiver raised this" in raised.value.__notes__[0]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


# -- docs/testing.md --------------------------------------------------------

PAGE = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def page_samples() -> tuple[str, list[str]]:
    """docs/testing.md's hidden prelude and its ```python blocks, in order."""
    text = PAGE.read_text()
    prelude = re.search(r"<!-- snippet-prelude\n(.*?)-->", text, re.DOTALL)
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    return (prelude.group(1) if prelude else ""), blocks


@pytest.mark.django_db(transaction=True)
def test_the_docs_samples_run_and_their_test_cases_pass() -> None:
    # The docs' own check runs each page's samples; this one also runs the
    # TestCase and TransactionTestCase the page shows, which defining them
    # does not.
    prelude, blocks = page_samples()
    module = types.ModuleType("docs_testing_page")
    sys.modules[module.__name__] = module
    try:
        exec(prelude, module.__dict__)
        for number, block in enumerate(blocks, 1):
            try:
                exec(
                    compile(block, f"docs/testing.md, sample {number}", "exec"),
                    module.__dict__,
                )
            except BaseException as error:
                error.add_note(f"in docs/testing.md's sample {number}")
                raise
        cases = [module.PaymentTestCase, module.PaymentTransactionTestCase]
        suite = unittest.TestSuite(
            unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in cases
        )
        result = unittest.TextTestRunner(stream=io.StringIO()).run(suite)
        assert result.wasSuccessful(), result.failures + result.errors
        assert result.testsRun == 2
    finally:
        del sys.modules[module.__name__]
