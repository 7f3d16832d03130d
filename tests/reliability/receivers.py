"""The background receivers the scenarios send to, one signal each.

Every send carries ``send_id`` (the producer's number for it, also written to
the sends table in the same transaction) and ``using`` (the database, which
also routes the outbox row). Each receiver leaves its executions in the
ledger (tests/reliability/ledger.py). ``EXPECTED`` says how many deliveries a
send of each signal makes.
"""

from __future__ import annotations

import asyncio
import os
import signal as signals
import time
from datetime import timedelta
from typing import Any

from django.db.models.signals import post_delete

import signalbox
from signalbox import codec
from tests.reliability import ledger
from tests.testapp.models import Order

FAILING_ATTEMPTS = 4
FAILING_BACKOFF = signalbox.Backoff(
    base=timedelta(seconds=0.2), cap=timedelta(seconds=0.8)
)
SUICIDE_ATTEMPTS = 3
SOON = timedelta(seconds=1)
RETRY_ASKS = 3
"""How many times each retry_sent receiver asks for a Retry before it is done."""
RETRY_DELAY = timedelta(seconds=0.4)
RETRY_ATTEMPTS = 2
"""Fewer than the asks: were a Retry to spend an attempt, the row would die."""

effect_sent = signalbox.Signal()
atomic_sent = signalbox.Signal()
failing_sent = signalbox.Signal()
suicide_sent = signalbox.Signal()
soon_sent = signalbox.Signal()
far_sent = signalbox.Signal()
fanout_sent = signalbox.Signal()
order_sent = signalbox.Signal()
later_sent = signalbox.Signal()
fuzz_sent = signalbox.Signal()
coroutine_sent = signalbox.Signal()
retry_sent = signalbox.Signal()

EXPECTED = {
    "effect_sent": 1,
    "atomic_sent": 1,
    "failing_sent": 1,
    "suicide_sent": 1,
    "soon_sent": 1,
    "far_sent": 1,
    "fanout_sent": 2,
    "order_sent": 1,
    "later_sent": 1,
    "coroutine_sent": 1,
    "retry_sent": 2,
}


def _side_effect(key: str, send_id: int | None, using: str, seconds: float) -> None:
    entry = ledger.start(using, kind="effect", receiver=key, send_id=send_id)
    time.sleep(seconds)
    ledger.end(using, entry)


def _atomic_effect(key: str, send_id: int | None, using: str, seconds: float) -> None:
    # SQLite has one writer, and the delivery's transaction holds the lock: a
    # probe through another connection would wait for it until it timed out.
    probing, probe = ledger.vendor(using) != "sqlite", 0
    if probing:
        probe = ledger.start(using, kind="probe", receiver=key, send_id=send_id)
    time.sleep(seconds)
    started = ledger.started_at(using, probe) if probing else None
    ledger.effect_in_transaction(
        using, receiver=key, send_id=send_id, started_at=started
    )
    if probing:
        ledger.end(using, probe)


@signalbox.receiver(effect_sent, run="background")
def effect(
    sender: object, send_id: int, using: str, seconds: float = 0, **kwargs: Any
) -> None:
    """A side effect outside the outbox's transaction: at least once."""
    _side_effect("effect", send_id, using, seconds)


@signalbox.receiver(atomic_sent, run="background", atomic=True)
def atomic_effect(
    sender: object, send_id: int, using: str, seconds: float = 0, **kwargs: Any
) -> None:
    """An effect committed with the acknowledgement: exactly once."""
    _atomic_effect("atomic_effect", send_id, using, seconds)


@signalbox.receiver(
    failing_sent, run="background", retries=FAILING_ATTEMPTS, backoff=FAILING_BACKOFF
)
def always_raises(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    entry = ledger.start(using, kind="probe", receiver="always_raises", send_id=send_id)
    ledger.end(using, entry)
    raise RuntimeError(f"always_raises fails on purpose (send {send_id})")


@signalbox.receiver(suicide_sent, run="background", retries=SUICIDE_ATTEMPTS)
def kills_its_worker(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    ledger.start(using, kind="probe", receiver="kills_its_worker", send_id=send_id)
    os.kill(os.getpid(), signals.SIGKILL)


@signalbox.receiver(soon_sent, run="background", delay=SOON)
def delayed_effect(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    _side_effect("delayed_effect", send_id, using, 0)


@signalbox.receiver(far_sent, run="background", delay=timedelta(hours=1))
def far_effect(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    _side_effect("far_effect", send_id, using, 0)


@signalbox.receiver(fanout_sent, run="background")
def fan_effect(
    sender: object, send_id: int, using: str, seconds: float = 0, **kwargs: Any
) -> None:
    _side_effect("fan_effect", send_id, using, seconds)


@signalbox.receiver(fanout_sent, run="background", atomic=True)
def fan_atomic(
    sender: object, send_id: int, using: str, seconds: float = 0, **kwargs: Any
) -> None:
    _atomic_effect("fan_atomic", send_id, using, seconds)


@signalbox.receiver(coroutine_sent, run="background")
async def coroutine_effect(
    sender: object, send_id: int, using: str, seconds: float = 0, **kwargs: Any
) -> None:
    """A coroutine's side effect: at least once, like a thread's."""
    # The ledger's connections are blocking: off the worker's event loop,
    # which the other coroutines share. to_thread() carries current_delivery().
    entry = await asyncio.to_thread(
        ledger.start, using, kind="effect", receiver="coroutine_effect", send_id=send_id
    )
    await asyncio.sleep(seconds)
    await asyncio.to_thread(ledger.end, using, entry)


def _asks_again(key: str, send_id: int, using: str) -> bool:
    """Record this run as a probe; whether it is to ask for a Retry once more."""
    entry = ledger.start(using, kind="probe", receiver=key, send_id=send_id)
    ledger.end(using, entry)
    delivery = signalbox.current_delivery()
    assert delivery is not None
    [(runs,)] = ledger.execute(
        using,
        "SELECT count(*) FROM reliability_ledger WHERE delivery_id = %s "
        "AND kind = 'probe'",
        (delivery.id,),
    )
    if int(runs) <= RETRY_ASKS:
        return True
    _side_effect(key, send_id, using, 0)
    return False


@signalbox.receiver(retry_sent, run="background", retries=RETRY_ATTEMPTS)
def asks_to_retry(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    """Asks for a Retry RETRY_ASKS times, then is done."""
    if _asks_again("asks_to_retry", send_id, using):
        raise signalbox.Retry(delay=RETRY_DELAY)


@signalbox.receiver(retry_sent, run="background", retries=RETRY_ATTEMPTS)
async def asks_to_retry_async(
    sender: object, send_id: int, using: str, **kwargs: Any
) -> None:
    """The same, as a coroutine."""
    key = "asks_to_retry_async"
    if await asyncio.to_thread(_asks_again, key, send_id, using):
        raise signalbox.Retry(delay=RETRY_DELAY)


@signalbox.receiver(order_sent, run="background")
def order_received(
    sender: object, send_id: int, using: str, order: Order, **kwargs: Any
) -> None:
    """Notes whether the order arrived fetched or rebuilt from its snapshot."""
    entry = ledger.start(
        using, kind="effect", receiver="order_received", send_id=send_id
    )
    _note(using, entry, order)


@signalbox.receiver(post_delete, sender=Order, run="background")
def order_deleted(sender: object, instance: Order, **kwargs: Any) -> None:
    using = kwargs.get("using") or "default"
    entry = ledger.start(using, kind="effect", receiver="order_deleted", send_id=None)
    _note(using, entry, instance)


def _note(using: str, entry: int, order: Order) -> None:
    how = "snapshot" if codec.from_snapshot(order) else "fetched"
    ledger.execute(
        using,
        "UPDATE reliability_ledger SET note = %s WHERE id = %s",
        (f"{how} {order.pk} {order.number}", entry),
    )
    ledger.end(using, entry)


def fuzz_target(sender: object, **kwargs: Any) -> None:
    """The key fuzzed rows name: reaching it means the payload decoded."""
    # Fuzzed rows live on the PostgreSQL cluster; their "using" is fuzz too.
    entry = ledger.start("default", kind="probe", receiver="fuzz_target", send_id=None)
    ledger.end("default", entry)


signalbox.connect(fuzz_sent, fuzz_target, run="background", retries=2)


def added_later(sender: object, send_id: int, using: str, **kwargs: Any) -> None:
    """A receiver the first release of the workers does not have."""
    _side_effect("added_later", send_id, using, 0)


def connect_late_receivers() -> None:
    """Connect what only a "deployed" worker (SIGNALBOX_REL_DEPLOYED=1) knows."""
    if os.environ.get("SIGNALBOX_REL_DEPLOYED") == "1":
        signalbox.connect(later_sent, added_later, run="background")
