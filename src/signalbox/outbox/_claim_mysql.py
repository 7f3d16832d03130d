"""The claim on MySQL and MariaDB: walks of ``signalbox_delivery_waiting``.

Its SQL is :data:`signalbox.outbox._statements.CLAIM_MYSQL`; what the claim
sets is ``_statements.taken()``, as on every vendor. :mod:`._claims` reads
the claimed rows back.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import connections, transaction

from signalbox._states import WAITING
from signalbox.outbox import _statements
from signalbox.outbox._base import _rows

# A claim on MySQL walks the index once per (state, engine, queue) when a
# worker takes at most this many combinations, else once per state.
_MOST_WALKS = 12


def claim(
    worker: str,
    engines: list[str],
    queues: list[str],
    receivers: list[str],
    limit: int,
    lease: timedelta,
    token: uuid.UUID,
    using: str,
) -> list[int]:
    """The claim on MySQL and MariaDB, which have no partial index.

    A locking read there locks every row it walks until it knows the row's
    fate, and the "due" index holds finished rows too (MySQL built it
    without its condition), all of them sorting before any new row: a claim
    walked the whole kept history on each call. Here each walk is one
    waiting state of one engine and queue along ``signalbox_delivery_waiting``
    (migration 0004), in the claim's order, stopping after ``limit`` rows
    (a walk over several engines or queues sorts its rows first). The walks'
    rows are merged in that order and the first ``limit`` taken; the rest
    stay locked, skipped by other claims, until this one commits. Returns
    the ids taken, each now leased under ``token``.
    """
    indexed = _has_waiting_index(using)
    if len(WAITING) * len(engines) * len(queues) <= _MOST_WALKS:
        walks = [
            _statements.claim_mysql(state, [engine], [queue], receivers, indexed)
            for state in WAITING
            for engine in engines
            for queue in queues
        ]
    else:
        walks = [
            _statements.claim_mysql(state, engines, queues, receivers, indexed)
            for state in WAITING
        ]
    found: list[tuple[int, datetime, int]] = []
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        for sql, params in walks:
            cursor.execute(sql, [*params, limit])
            found += cursor.fetchall()
        ids = [pk for _, _, pk in sorted(found)[:limit]]
        if not ids:
            return []
        _rows(using).filter(id__in=ids, state__in=WAITING).update(
            **_statements.taken(token, worker, lease)
        )
    return ids


# Whether the table has migration 0004's index, by (alias, database name).
_WAITING_INDEXED: dict[tuple[str, str], bool] = {}


def _has_waiting_index(using: str) -> bool:
    """Whether ``signalbox_delivery`` has ``signalbox_delivery_waiting``:
    looked up once per process and database."""
    connection = connections[using]
    key = (using, str(connection.settings_dict["NAME"]))
    if key not in _WAITING_INDEXED:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.statistics "
                "WHERE table_schema = DATABASE() AND table_name = %s "
                "AND index_name = %s",
                ["signalbox_delivery", _statements.WAITING_INDEX],
            )
            _WAITING_INDEXED[key] = bool(cursor.fetchone()[0])
    return _WAITING_INDEXED[key]
