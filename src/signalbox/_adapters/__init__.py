"""The objects signalbox connects to a signal in place of a receiver.

An adapter stands in for one receiver on one signal: when the signal calls
it, it runs the receiver the way the receiver asked (timed, after the commit,
or in a worker). It must live exactly as long as the receiver. The signal
holds the adapter as it would have held the receiver (weakly unless
``weak=False``); for a weak connection a finalizer on the receiver's owner
holds the adapter, and the adapter holds the receiver only weakly, so the
receiver's death releases the adapter, and the adapter's death lets Django
drop the connection.

One module per way of running: ``_base`` (what every adapter is),
``_timed`` (inline receivers of signals that are not signalbox's),
``_on_commit`` and ``_background`` (the outbox row).
"""

from __future__ import annotations

from signalbox._adapters._background import (
    BackgroundReceiver,
    TravellingBackgroundReceiver,
)
from signalbox._adapters._base import Adapter, database
from signalbox._adapters._on_commit import OnCommitReceiver, TravellingOnCommitReceiver
from signalbox._adapters._timed import AsyncTimedReceiver, TimedReceiver

__all__ = [
    "Adapter",
    "AsyncTimedReceiver",
    "BackgroundReceiver",
    "OnCommitReceiver",
    "TimedReceiver",
    "TravellingBackgroundReceiver",
    "TravellingOnCommitReceiver",
    "database",
]
