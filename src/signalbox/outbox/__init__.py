"""Moving deliveries through their states, in the database.

Every transition is one short statement that names the lease token it
expects, so a worker whose lease was taken over (it was paused, or lost its
connection) changes nothing: :func:`complete`, :func:`fail`, :func:`retry_later`
and :func:`release` return whether they applied. Times come from the
database's clock (``Now()``), never from a worker's.

Where each statement lives (the SQL is written out only where the ORM cannot
write it or not cheaply enough; the ORM writes it everywhere else):

- ``_statements.py``: every hand-written statement. The claim's columns and
  values (``_TAKEN``, used by the PostgreSQL statements and, through
  ``taken()``, by the ORM's claims on SQLite and MySQL/MariaDB) and the
  claim statements (``CLAIM_POSTGRESQL``, ``CLAIM_ONE``, ``CLAIM_MYSQL``);
  the send's INSERT; the acknowledgements; the relay's hand-over marks.
  Change the claim query here. What "due" means is ``signalbox._states.due``
  / ``due_sql``, which ``Delivery.objects.due()`` uses too.
- ``_libpq.py``: runs those statements through libpq on psycopg 3 (prepared,
  binary), falling back to Django's cursor.
- ``_claims.py``: the claim per vendor (PostgreSQL one statement; SQLite a
  plain ``UPDATE``), the claim of one row by id, reading claimed rows back.
- ``_leases.py``: every transition a lease token guards, and the rescue of
  expired leases.
- ``_conflicts.py``: running a statement again when the database chose it as
  a deadlock's victim.
- ``_claim_mysql.py``: the claim on MySQL/MariaDB, walks of
  ``signalbox_delivery_waiting`` under ``SKIP LOCKED``.
- ``_writing.py``: the send's INSERT, in the sender's transaction.
- ``_handover.py``: the relay's hand-over to engines and its wake-ups.
- ``_housekeeping.py``: transitions no lease guards: retries by a person,
  bringing rows forward for a test, erasure, pruning, burying unknown keys,
  the workers' own records.
- ``_waiting.py``: what waits, for ``signalbox status``, ``health`` and the checks.
- ``_base.py``: the row shapes (:class:`Claimed`, ...) and the clock helpers.
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
from signalbox.outbox._claims import claim, claim_one, due_owner
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
    bring_forward,
    bury_unknown,
    due_for,
    erase_payloads,
    forget_worker,
    heartbeat,
    known_receivers,
    live_queues,
    prune,
    relay_seen,
    retry,
    retry_dead,
    retry_dead_ids,
    waiting_for_relay,
)
from signalbox.outbox._leases import (
    complete,
    complete_many,
    expired,
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
from signalbox.outbox._waiting import Waiting, due_elsewhere, due_per_queue, unstarted
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
    "bring_forward",
    "bury_unknown",
    "claim",
    "claim_one",
    "complete",
    "complete_many",
    "due_elsewhere",
    "due_for",
    "due_owner",
    "due_per_queue",
    "enqueue",
    "erase_payloads",
    "expired",
    "extend",
    "fail",
    "forget_worker",
    "handover_due",
    "heartbeat",
    "hold_liveness",
    "known_receivers",
    "live_queues",
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
