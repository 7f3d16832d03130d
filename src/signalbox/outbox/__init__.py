"""Moving deliveries through their states, in the database.

Every transition is one short statement that names the lease token it
expects, so a worker whose lease was taken over (it was paused, or lost its
connection) changes nothing: :func:`complete`, :func:`fail`, :func:`retry_later`
and :func:`release` return whether they applied. Times come from the
database's clock (``Now()``), never from a worker's.

The claim is the one place that needs SQL the ORM cannot write: on PostgreSQL
a single ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``;
on MySQL/MariaDB ``select_for_update(skip_locked=True)`` in a transaction; on
SQLite, which has one writer at a time, a plain ``UPDATE`` of a sub-select.
"""

from signalbox.outbox._base import (
    NOTIFY_CHANNEL,
    RELAY_CHANNEL,
    RELAY_PREFIX,
    Claimed,
    Handover,
    NewDelivery,
    Unreadable,
    after,
    ago,
)
from signalbox.outbox._handover import (
    handover_due,
    mark_handed_over,
    next_due,
    wake_relay,
    wake_relay_for,
)
from signalbox.outbox._housekeeping import (
    Pruned,
    RetriedIds,
    bury_unknown,
    due_for,
    erase_payloads,
    forget_worker,
    heartbeat,
    known_receivers,
    prune,
    relay_seen,
    retry,
    retry_dead,
    retry_dead_ids,
    waiting_for_relay,
)
from signalbox.outbox._leases import (
    claim,
    claim_one,
    complete,
    complete_many,
    due_owner,
    extend,
    fail,
    release,
    rescue,
    retry_later,
    take_back,
)
from signalbox.outbox._liveness import (
    LivenessLock,
    hold_liveness,
    liveness_key,
    rescue_gone,
)
from signalbox.outbox._waiting import Waiting, due_elsewhere, unstarted
from signalbox.outbox._writing import batch, enqueue

__all__ = [
    "NOTIFY_CHANNEL",
    "RELAY_CHANNEL",
    "RELAY_PREFIX",
    "Claimed",
    "Handover",
    "LivenessLock",
    "NewDelivery",
    "Pruned",
    "RetriedIds",
    "Unreadable",
    "Waiting",
    "after",
    "ago",
    "batch",
    "bury_unknown",
    "claim",
    "claim_one",
    "complete",
    "complete_many",
    "due_elsewhere",
    "due_for",
    "due_owner",
    "enqueue",
    "erase_payloads",
    "extend",
    "fail",
    "forget_worker",
    "handover_due",
    "heartbeat",
    "hold_liveness",
    "known_receivers",
    "liveness_key",
    "mark_handed_over",
    "next_due",
    "prune",
    "relay_seen",
    "release",
    "rescue",
    "rescue_gone",
    "retry",
    "retry_dead",
    "retry_dead_ids",
    "retry_later",
    "take_back",
    "unstarted",
    "waiting_for_relay",
    "wake_relay",
    "wake_relay_for",
]
