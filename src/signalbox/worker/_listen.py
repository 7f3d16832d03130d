"""Waking workers on PostgreSQL's ``NOTIFY``, on a connection of their own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from signalbox import _outage
from signalbox.outbox import NOTIFY_CHANNEL

logger = logging.getLogger("signalbox.worker")


class Listener(threading.Thread):
    """Sets ``wake`` whenever a notification arrives on ``channel`` (the
    embedded workers' by default) whose payload ``wanted`` accepts (any, by
    default).

    It keeps its own autocommit connection (Django's are per thread and live
    inside transactions), and reconnects with backoff when the server goes
    away, quietly (see :mod:`signalbox._outage`); while it is down the worker
    (or the relay) still polls, so nothing waits longer than the poll
    interval.
    """

    def __init__(
        self,
        using: str,
        wake: threading.Event,
        stop: threading.Event,
        *,
        channel: str = NOTIFY_CHANNEL,
        wanted: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(name="signalbox-listen", daemon=True)
        self.using = using
        self.wake = wake
        self.stop = stop
        self.channel = channel
        self.wanted = wanted

    def run(self) -> None:
        site = _outage.Site(self.using, "LISTEN", logger)
        while not self.stop.is_set():
            try:
                self._listen(site)
            except Exception as error:  # the worker polls meanwhile; say so and retry
                pause = site.failed(error, "LISTEN connection lost; retrying.")
                self.wake.set()
                self.stop.wait(pause)

    def _listen(self, site: _outage.Site) -> None:
        import psycopg

        params: dict[str, Any] = connections[self.using].get_connection_params()
        with psycopg.connect(**params, autocommit=True) as connection:
            # A channel name is one of outbox's constants, never data.
            connection.execute(f"LISTEN {self.channel}")
            site.ok(reached=True)
            # Anything committed while we were (re)connecting was missed: look.
            self.wake.set()
            while not self.stop.is_set():
                for notice in connection.notifies(timeout=0.25):
                    if self.wanted is None or self.wanted(notice.payload):
                        self.wake.set()
