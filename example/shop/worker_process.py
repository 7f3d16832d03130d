"""A real ``manage.py signalbox worker`` process, started and stopped by the demo.

The worker is the very command a deployment runs, in its own process, on the
same SQLite file as the demo's requests. It loads the shop app like any
process does, so it has the shop's background receivers connected, and runs
whatever rows the demo's checkouts commit. What its receivers did reaches the
demo through a journal file (see :mod:`shop.effects`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Final

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from shop import effects
from signalbox.models import Delivery, WorkerRecord

COMMAND: Final = ("signalbox", "worker", "--concurrency", "2")
"""What follows ``manage.py`` to start the worker."""

FINISHED: Final = ("completed", "dead")
"""The states a delivery ends in."""


class WorkerProcess:
    """``python manage.py signalbox worker --concurrency 2`` in a subprocess.

    Use it as a context manager: it is started on entry, and stopped on exit
    (SIGTERM, then SIGKILL) if :meth:`stop` did not stop it first. ``folder``
    holds its log and the journal its receivers record their effects into.
    """

    def __init__(self, folder: Path, *, email_seconds: float) -> None:
        self.journal = folder / "effects.jsonl"
        self.log = folder / "worker.log"
        self.email_seconds = email_seconds
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> str:
        """The command line, as a person would type it."""
        return "python manage.py " + " ".join(COMMAND)

    @property
    def pid(self) -> int:
        """The worker's process id."""
        assert self.process is not None, "not started"
        return self.process.pid

    def __enter__(self) -> WorkerProcess:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SHOP_EMAIL_SECONDS": str(self.email_seconds),
            effects.JOURNAL: str(self.journal),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", *COMMAND],
                cwd=settings.BASE_DIR,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # Something went wrong before stop(): still ask politely first.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A worker that had a SIGINT already (Ctrl-C reaches the whole process
        # group) takes SIGTERM as "exit at once" and leaves its record behind;
        # a rerun would take that for a live worker.
        WorkerRecord.objects.filter(name__contains=f":{self.pid}:").delete()

    def wait_until_ready(self, timeout: float = 20.0) -> None:
        """Return once the worker has announced itself in the database."""
        mine = WorkerRecord.objects.filter(name__contains=f":{self.pid}:")
        self.wait_for(mine.exists, timeout, "the worker to start")

    def wait_until_finished(self, ids: list[int], timeout: float) -> None:
        """Return once the deliveries ``ids`` are completed or dead."""
        # One query: asked in two, a row could slip from executing to
        # retryable between them and look finished.
        unfinished = Delivery.objects.filter(id__in=ids).exclude(state__in=FINISHED)

        def finished() -> bool:
            return not unfinished.exists()

        self.wait_for(finished, timeout, f"deliveries {ids} to finish")

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: str
    ) -> None:
        """Poll ``condition()`` until it is true; fail if the worker dies or hangs."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                raise CommandError(
                    f"The worker exited ({self.process.returncode}) while waiting "
                    f"for {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Timed out after {timeout:g} s waiting for {what}:\n"
                    f"{self.output()}"
                )
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> int:
        """Send SIGTERM, wait for the worker to exit, and return its exit code."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise CommandError(
                f"The worker did not exit within {timeout:g} s of SIGTERM:\n"
                f"{self.output()}"
            ) from None

    def output(self) -> str:
        """What the worker has written to stdout and stderr so far."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def refuse_other_workers() -> None:
    """Raise :class:`CommandError` if another worker looks alive on this database.

    It would take some of the demo's deliveries and run them where the demo
    cannot see what they did. A worker refreshes its record every third of a
    lease; one not seen for two leases is gone.
    """
    lease = timedelta(seconds=settings.SIGNALBOX.get("LEASE_SECONDS", 30))
    alive = WorkerRecord.objects.filter(seen_at__gte=timezone.now() - 2 * lease)
    names = ", ".join(alive.values_list("name", flat=True))
    if names:
        raise CommandError(
            f"Another signalbox worker is running on this database ({names}); "
            "stop it first, so that the demo's own worker gets every delivery."
        )
