"""signalbox: Django signals whose receivers choose how they run.

::

    from signalbox import Signal, receiver

    order_paid = Signal()

    @receiver(order_paid, run="on_commit")
    def refresh_cache(sender, order, **kwargs): ...

See the README for the first ten minutes and ``docs/`` for the rest.
"""

from signalbox.dispatch import Signal, connect, receiver
from signalbox.exceptions import (
    CodecError,
    ConfigurationError,
    DecodeError,
    ReceiverError,
    SignalboxError,
)
from signalbox.registry import ReceiverInfo, Run

__all__ = [
    "CodecError",
    "ConfigurationError",
    "DecodeError",
    "ReceiverError",
    "ReceiverInfo",
    "Run",
    "Signal",
    "SignalboxError",
    "connect",
    "receiver",
]
