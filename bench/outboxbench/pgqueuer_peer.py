"""PgQueuer (on asyncpg) as a throughput peer: the driver's side and its worker.

The driver installs PgQueuer's tables in the bench database once, writes the
backlog with PgQueuer's own batch ``enqueue`` and starts the workers::

    python -m outboxbench.pgqueuer_peer --batch-size 10

Each worker is a ``QueueManager`` on one asyncpg connection, in ``drain``
mode (it exits once the queue is empty and its jobs are done), with one
no-op ``async`` entrypoint. The drain is read from PgQueuer's own log table
(``pgqueuer_log``, written by the database's clock): from the first
``picked`` row to the last ``successful`` one. Its periodic folding of that
log into statistics is turned off, so every row is still there to count.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from django.conf import settings

ENTRYPOINT = "signalbox_bench_noop"
CHUNK = 1_000  # jobs per enqueue


def dsn() -> str:
    """The bench's PostgreSQL database, as asyncpg spells it."""
    db = settings.DATABASES["default"]
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


async def _queries():  # type: ignore[no-untyped-def]
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn())
    return connection, Queries(AsyncpgDriver(connection))


async def _prepare(jobs: int) -> None:
    connection, queries = await _queries()
    try:
        if not await queries.schema_is_installed():
            await queries.install()
        await queries.clear_queue()
        await queries.clear_queue_log()
        await queries.clear_statistics_log()
        for first in range(0, jobs, CHUNK):
            count = min(CHUNK, jobs - first)
            await queries.enqueue([ENTRYPOINT] * count, [None] * count, [0] * count)
        await connection.execute("ANALYZE pgqueuer")
    finally:
        await connection.close()


def prepare(jobs: int) -> None:
    """Install PgQueuer (once), empty its tables, enqueue ``jobs`` no-op jobs."""
    asyncio.run(_prepare(jobs))


async def _drained() -> tuple[int, float, float]:
    connection, _ = await _queries()
    try:
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'successful') AS done,"
            " extract(epoch FROM min(created) FILTER (WHERE status = 'picked'))"
            " AS first,"
            " extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))"
            " AS last FROM pgqueuer_log"
        )
        return int(row["done"]), float(row["first"] or 0), float(row["last"] or 0)
    finally:
        await connection.close()


def drained() -> tuple[int, float, float]:
    """Jobs done, the first pick and the last success (epoch seconds)."""
    return asyncio.run(_drained())


def empty() -> None:
    """Leave no PgQueuer backlog or log behind (when it is installed)."""

    async def run() -> None:
        connection, queries = await _queries()
        try:
            if await queries.schema_is_installed():
                await queries.clear_queue()
                await queries.clear_queue_log()
                await queries.clear_statistics_log()
        finally:
            await connection.close()

    asyncio.run(run())


async def work(batch_size: int) -> None:
    """One PgQueuer worker: drain the queue, then return."""
    from pgqueuer.qm import QueueManager
    from pgqueuer.types import QueueExecutionMode

    connection, queries = await _queries()
    manager = QueueManager(queries)

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: object) -> None:
        return None

    try:
        await manager.run(
            batch_size=batch_size,
            mode=QueueExecutionMode.drain,
            dequeue_timeout=timedelta(seconds=1),
            log_aggregation_interval=timedelta(0),
        )
    finally:
        await connection.close()


def worker_argv(batch_size: int) -> list[str]:
    """The command line of one worker, for :class:`outboxbench.processes.Processes`."""
    return ["-m", "outboxbench.pgqueuer_peer", "--batch-size", str(batch_size)]


if __name__ == "__main__":
    import django

    parser = argparse.ArgumentParser(description="One PgQueuer bench worker.")
    parser.add_argument("--batch-size", type=int, default=10)
    django.setup()
    batch_size = parser.parse_args().batch_size
    try:  # PgQueuer's own command line runs its workers on uvloop
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(work(batch_size)))
    sys.exit(uvloop.run(work(batch_size)))
