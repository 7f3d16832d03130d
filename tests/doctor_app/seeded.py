"""Every anti-pattern the doctor finds in code, one per receiver."""

from __future__ import annotations

from functools import partial
from time import sleep
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.core.mail import EmailMessage, send_mail

import signalbox
from tests.doctor_app import helpers
from tests.doctor_app.signals import seeded_order_paid


def mails_inline(sender: Any, **kwargs: Any) -> None:
    """SB101: e-mail in the request."""
    send_mail("Paid", "Thanks", "shop@example.com", ["customer@example.com"])


def mails_a_message_on_commit(sender: Any, **kwargs: Any) -> None:
    """SB101: EmailMessage.send after the commit, still in the request."""
    message = EmailMessage("Paid", "Thanks", to=["customer@example.com"])
    message.send()


def fetches_through_a_helper(sender: Any, **kwargs: Any) -> None:
    """SB101, one call deep: helpers.fetch_rates opens a URL."""
    helpers.describe(sender)
    helpers.fetch_rates()


def fetches_two_deep(sender: Any, **kwargs: Any) -> None:
    """SB101, two calls deep."""
    helpers.refresh_rates()


def sleeps(sender: Any, **kwargs: Any) -> None:
    """SB101: time.sleep imported by name."""
    sleep(0.01)


async def sleeps_in_a_coroutine(sender: Any, **kwargs: Any) -> None:
    """SB101: time.sleep in a coroutine blocks its event loop."""
    sleep(0.01)


def mails_on_login(sender: Any, **kwargs: Any) -> None:
    """SB120: user_logged_in's request cannot travel."""


def make_counter() -> Any:
    """A new function each call: connected twice, it runs twice (SB112)."""

    def count_sends(sender: Any, **kwargs: Any) -> None:
        pass

    return count_sends


class Handler:
    def on_paid(self, sender: Any, **kwargs: Any) -> None:
        pass


def connect_all() -> None:
    """Connect the seeded receivers (the weak ones die at once: SB111)."""
    signalbox.connect(seeded_order_paid, mails_inline)
    signalbox.connect(seeded_order_paid, mails_a_message_on_commit, run="on_commit")
    seeded_order_paid.connect(fetches_through_a_helper)
    seeded_order_paid.connect(fetches_two_deep)
    seeded_order_paid.connect(sleeps)
    seeded_order_paid.connect(sleeps_in_a_coroutine)
    signalbox.connect(user_logged_in, mails_on_login, run="background")
    seeded_order_paid.connect(make_counter(), weak=False)
    seeded_order_paid.connect(make_counter(), weak=False)
    seeded_order_paid.connect(lambda sender, **kwargs: None)
    seeded_order_paid.connect(Handler().on_paid)
    seeded_order_paid.connect(partial(mails_on_login, reason="paid"))

    def audit(sender: Any, **kwargs: Any) -> None:
        pass

    seeded_order_paid.connect(audit)

    @signalbox.receiver(seeded_order_paid)
    def nested(sender: Any, **kwargs: Any) -> None:
        pass


def disconnect_all() -> None:
    """Undo :func:`connect_all` (what is still connected)."""
    for function in (
        mails_inline,
        mails_a_message_on_commit,
        fetches_through_a_helper,
        fetches_two_deep,
        sleeps,
        sleeps_in_a_coroutine,
    ):
        signalbox.disconnect(seeded_order_paid, function)
    signalbox.disconnect(user_logged_in, mails_on_login)
    for connected in list(seeded_order_paid._live_receivers(None)[0]):
        seeded_order_paid.disconnect(connected)
