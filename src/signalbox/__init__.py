"""signalbox: Django signals whose receivers choose how they run.

::

    from signalbox import Signal, receiver

    order_paid = Signal()

    @receiver(order_paid, run="on_commit")
    def refresh_cache(sender, order, **kwargs): ...

See the README for the first ten minutes and ``docs/`` for the rest.
"""

from signalbox._context import DeliveryContext, current_delivery
from signalbox.dispatch import Signal, connect, disconnect, receiver
from signalbox.exceptions import (
    CodecError,
    ConfigurationError,
    DecodeError,
    ReceiverError,
    Retry,
    SignalboxError,
)
from signalbox.policy import Backoff
from signalbox.registry import ReceiverInfo, Run

# The one place the version is written: the build reads it from here.
__version__ = "0.1.0.dev0"

__all__ = [
    "Backoff",
    "CodecError",
    "ConfigurationError",
    "DecodeError",
    "DeliveryContext",
    "ReceiverError",
    "ReceiverInfo",
    "Retry",
    "Run",
    "Signal",
    "SignalboxError",
    "connect",
    "current_delivery",
    "disconnect",
    "receiver",
]
