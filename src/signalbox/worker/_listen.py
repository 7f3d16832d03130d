"""Waking workers on PostgreSQL's ``NOTIFY``, on a connection of their own."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connections

from signalbox.outbox import NOTIFY_CHANNEL

logger = logging.getLogger("signalbox.worker")


class Listener(threading.Thread):
    """Sets ``wake`` whenever a notification arrives on the signalbox channel.

    It keeps its own autocommit connection (Django's are per thread and live
    inside transactions), and reconnects with backoff when the server goes
    away; while it is down the worker still polls, so nothing waits longer
    than the poll interval.
    """

    def __init__(
        self, using: str, wake: threading.Event, stop: threading.Event
    ) -> None:
        super().__init__(name="signalbox-listen", daemon=True)
        self.using = using
        self.wake = wake
        self.stop = stop

    def run(self) -> None:
        pause = 0.5
        while not self.stop.is_set():
            try:
                self._listen()
                pause = 0.5
            except Exception as error:  # the worker polls meanwhile; say so and retry
                logger.warning(
                    "LISTEN connection lost (%s); retrying in %.1f s.", error, pause
                )
                self.wake.set()
                self.stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def _listen(self) -> None:
        import psycopg

        params: dict[str, Any] = connections[self.using].get_connection_params()
        with psycopg.connect(**params, autocommit=True) as connection:
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
            # Anything committed while we were (re)connecting was missed: look.
            self.wake.set()
            while not self.stop.is_set():
                for _ in connection.notifies(timeout=0.25):
                    self.wake.set()
