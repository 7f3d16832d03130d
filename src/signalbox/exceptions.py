"""The exceptions signalbox raises.

Every error derives from :class:`SignalboxError`, so ``except SignalboxError``
catches all of them; configuration mistakes also derive from Django's
:class:`~django.core.exceptions.ImproperlyConfigured`, which is what Django
users already expect at start-up.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class SignalboxError(Exception):
    """The root of every exception signalbox raises."""


class ConfigurationError(SignalboxError, ImproperlyConfigured):
    """A setting or a receiver's options are wrong; the message says how to fix it."""


class ReceiverError(ConfigurationError):
    """A receiver cannot be connected the way it asks to be.

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
