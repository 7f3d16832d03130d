"""Ways to hurt a running system: processes, database connections, the network.

Everything here stays on loopback and on things the harness started itself:
its own worker processes, its own database's backends, its own private
cluster (see :mod:`tests.reliability.cluster`) and :class:`Proxy`, a small
TCP proxy that workers can be pointed through to add latency, hold every
byte (a partition that later heals) or cut every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from django.db import connections

from tests.reliability.harness import Faults, now, sql


def terminate_backends(alias: str, application: str = "signalbox-rel-worker") -> int:
    """``pg_terminate_backend`` every backend of our database whose client is a worker.

    Returns how many were terminated. Only the harness's own database is
    looked at; the driver's own connection is spared.
    """
    rows = sql(
        alias,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name LIKE %s",
        [f"{application}%"],
    )
    return int(rows[0][0])


def terminate_storm(
    alias: str, faults: Faults, *, every: float, seconds: float
) -> tuple[int, int]:
    """Terminate workers' backends every ``every`` s for ``seconds``.

    Returns (rounds, backends terminated).
    """
    began, rounds, killed = now(), 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            killed += terminate_backends(alias)
        except Exception:  # our own connection may be hit by a restart: reopen
            connections[alias].close()
        rounds += 1
        time.sleep(every)
    faults.mark("terminate_backends", began, now())
    return rounds, killed


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``target_port``, with faults to switch on.

    ``latency`` delays every chunk, each way, by that many seconds (order is
    kept); :meth:`hold` stops forwarding, new connections included, until
    :meth:`release` (bytes are kept and delivered then, as TCP would after a
    short partition); :meth:`cut` closes every connection at once.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.latency = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="proxy")
        self.connections = 0

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(self._open())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._close(server))
        self._loop.close()

    async def _open(self) -> asyncio.Server:
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0.05)  # the aborted transports' connection_lost

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer),
                self._pipe(server_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            assert self._flowing is not None
            while True:
                due, data = await chunks.get()
                if not data:
                    break
                delay = due - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            writer.close()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                await chunks.put((self._loop.time() + self.latency, data))
                if not data:
                    break
        except Exception:  # the connection was cut: so is the other direction
            delivering.cancel()
        with contextlib.suppress(BaseException):
            await delivering

    # -- faults, called from the driver's thread ------------------------------

    def hold(self) -> None:
        """Stop forwarding anything, in both directions, until :meth:`release`."""
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        if self._flowing is not None:
            self._loop.call_soon_threadsafe(self._flowing.set)

    def cut(self) -> None:
        """Close every connection through the proxy now."""

        def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(close_all)

    @contextlib.contextmanager
    def delayed(self, seconds: float) -> Iterator[None]:
        self.latency = seconds
        try:
            yield
        finally:
            self.latency = 0.0
