"""The seeded receivers done right: the doctor finds nothing here."""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.core.mail import EmailMessage, send_mail
from django.utils.functional import SimpleLazyObject

import signalbox
from tests.doctor_app import helpers
from tests.doctor_app.signals import clean_order_paid

counted: list[str] = []


def _never_built() -> Any:
    raise AssertionError("the doctor built a lazy object it only had to read")


rates = SimpleLazyObject(_never_built)
"""Reading a receiver's code must not build what its names stand for."""


def mails_in_background(sender: Any, **kwargs: Any) -> None:
    """E-mail, in a worker."""
    send_mail("Paid", "Thanks", "shop@example.com", ["customer@example.com"])


def mails_a_message_in_background(sender: Any, **kwargs: Any) -> None:
    """EmailMessage.send, in a worker."""
    EmailMessage("Paid", "Thanks", to=["customer@example.com"]).send()


def describes_inline(sender: Any, **kwargs: Any) -> None:
    """Inline, and calls only what does not block."""
    counted.append(helpers.describe(sender))


def reads_a_lazy_object(sender: Any, **kwargs: Any) -> None:
    """Inline; calls a method of a lazy object the doctor must leave unbuilt."""
    rates.refresh()
    counted.append(rates.current)


async def awaits_inline(sender: Any, **kwargs: Any) -> None:
    """A coroutine that awaits instead of blocking."""
    await asyncio.sleep(0)


def fetches_in_background(sender: Any, **kwargs: Any) -> None:
    """The helper that blocks, in a worker."""
    helpers.refresh_rates()


def notes_login(sender: Any, **kwargs: Any) -> None:
    """On user_logged_in, in the background, without its request."""


class Handler:
    def on_paid(self, sender: Any, **kwargs: Any) -> None:
        pass


handler = Handler()


def the_handler() -> Handler:
    """A long-lived object, returned by a function: held by this module."""
    return handler


def chosen_receiver() -> Any:
    """A module-level function, returned by a function."""
    return describes_inline


def connect_all() -> None:
    """Connect the clean receivers: once each, all held."""
    signalbox.connect(clean_order_paid, mails_in_background, run="background")
    signalbox.connect(clean_order_paid, mails_a_message_in_background, run="background")
    signalbox.connect(clean_order_paid, describes_inline)
    signalbox.connect(clean_order_paid, describes_inline)  # Django ignores it
    signalbox.connect(clean_order_paid, reads_a_lazy_object)
    signalbox.connect(clean_order_paid, awaits_inline)
    signalbox.connect(clean_order_paid, fetches_in_background, run="background")
    signalbox.connect(
        user_logged_in, notes_login, run="background", exclude=["request"]
    )
    clean_order_paid.connect(handler.on_paid)
    clean_order_paid.connect(the_handler().on_paid)
    clean_order_paid.connect(chosen_receiver(), sender="another sender")
    clean_order_paid.connect(lambda sender, **kwargs: None, weak=False)
    clean_order_paid.connect(lambda sender, **kwargs: None, None, False)


def disconnect_all() -> None:
    """Undo :func:`connect_all`."""
    for function in (
        mails_in_background,
        mails_a_message_in_background,
        describes_inline,
        reads_a_lazy_object,
        awaits_inline,
        fetches_in_background,
    ):
        signalbox.disconnect(clean_order_paid, function)
    signalbox.disconnect(user_logged_in, notes_login)
    signalbox.disconnect(clean_order_paid, describes_inline, sender="another sender")
    for connected in list(clean_order_paid._live_receivers(None)[0]):
        clean_order_paid.disconnect(connected)
