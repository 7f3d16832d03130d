"""Starting and stopping the worker processes the benchmark measures.

Every process loads :mod:`outboxbench.settings` with the same ``PYTHONPATH``
as the driver, so it runs the signalbox the driver measures. Output goes to a
log file per process in the state folder; a process that fails shows its
last lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from outboxbench.settings import STATE

BENCH = Path(__file__).resolve().parents[1]


class WorkerFailed(RuntimeError):
    """A worker process exited badly or never finished."""


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:])


class Processes:
    """The processes of one measurement; stopped, whatever happens, on exit."""

    def __init__(self, src: Path, env: Mapping[str, str] | None = None) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(BENCH), str(src)]),
            "DJANGO_SETTINGS_MODULE": "outboxbench.settings",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.started: list[Started] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, name: str, argv: Sequence[str]) -> Started:
        log = STATE / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=BENCH,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on the driver is the driver's
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def wait(self, timeout: float) -> None:
        """Wait until every process has exited, which each must do with 0."""
        deadline = time.monotonic() + timeout
        for each in self.started:
            try:
                code = each.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                raise WorkerFailed(
                    f"{each.name} still runs after {timeout:.0f} s:\n{each.tail()}"
                ) from None
            if code != 0:
                raise WorkerFailed(f"{each.name} exited with {code}:\n{each.tail()}")

    def check_alive(self) -> None:
        for each in self.started:
            code = each.process.poll()
            if code is not None:
                raise WorkerFailed(f"{each.name} exited with {code}:\n{each.tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM each process still running (a graceful stop), then SIGKILL."""
        running = [s for s in self.started if s.process.poll() is None]
        for each in running:
            each.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for each in running:
            try:
                each.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                each.process.kill()
                each.process.wait()


def signalbox_worker(concurrency: int, database: str, burst: bool) -> list[str]:
    argv = ["-m", "django", "signalbox", "worker", "--concurrency", str(concurrency)]
    argv += ["--database", database]
    return [*argv, "--burst"] if burst else argv


def celery_worker(name: str, concurrency: int, queue: str) -> list[str]:
    # No gossip, mingle or heartbeat: cluster chatter that a benchmark of one
    # queue does not need, and that only slows start-up.
    return [
        *("-m", "celery", "-A", "outboxbench.celery_app", "worker"),
        *("--pool", "prefork", "--concurrency", str(concurrency)),
        *("--hostname", f"{name}@%h", "--queues", queue, "--loglevel", "WARNING"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]


def procrastinate_worker(concurrency: int, queue: str, one_shot: bool) -> list[str]:
    argv = ["-m", "django", "procrastinate", "worker"]
    argv += ["--concurrency", str(concurrency), "--queues", queue]
    return [*argv, "--one-shot"] if one_shot else argv
