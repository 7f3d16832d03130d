"""The exceptions signalbox raises.

Every error derives from :class:`SignalboxError`, so ``except SignalboxError``
catches all of them; configuration mistakes also derive from Django's
:class:`~django.core.exceptions.ImproperlyConfigured`, which is what Django
users already expect at start-up.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured


class SignalboxError(Exception):
    """The root of every exception signalbox raises."""


class ConfigurationError(SignalboxError, ImproperlyConfigured):
    """A setting or a receiver's options are wrong; the message says how to fix it."""


class ReceiverError(ConfigurationError, TypeError):
    """A receiver cannot be connected the way it asks to be.

    It is a ``TypeError`` too, which is what Django's ``connect()`` raises for
    an argument it does not take.

    ``receiver`` is the callable, ``signal`` the signal it was being connected
    to, and ``key`` its registry key when one could be derived.
    """

    def __init__(
        self,
        message: str,
        *,
        receiver: object = None,
        signal: object = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.receiver = receiver
        self.signal = signal
        self.key = key


class CodecError(SignalboxError, TypeError):
    """A value cannot travel to a background receiver; raised at ``send()`` time.

    Nothing has been written when this is raised. ``signal`` and ``receiver``
    name the connection, ``argument`` the keyword argument (with a path such as
    ``order.items[2]`` for a value nested inside it).
    """

    def __init__(
        self,
        message: str,
        *,
        signal: str | None = None,
        receiver: str | None = None,
        argument: str | None = None,
    ) -> None:
        super().__init__(message)
        self.signal = signal
        self.receiver = receiver
        self.argument = argument


class DecodeError(SignalboxError, ValueError):
    """A stored payload cannot be turned back into arguments.

    The worker records this as the delivery's reason for being dead; the
    payload is data, so decoding never imports, evaluates or unpickles it.
    """


class Retry(SignalboxError):
    """Raise from a background receiver to run it again later, without an error.

    ``raise Retry(delay=timedelta(minutes=5))`` puts the delivery back for
    five minutes; the attempt is not spent and nothing is logged as a failure.
    (A receiver's return value already means something to Django, so asking
    for a retry is an exception.)
    """

    def __init__(self, delay: timedelta | float = 0, reason: str = "") -> None:
        self.delay = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
        super().__init__(reason or f"retry in {self.delay}")
