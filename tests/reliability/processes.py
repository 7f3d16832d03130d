"""Worker processes: started, signalled, measured and stopped by the harness.

A worker is a black box here: ``python -m django signalbox worker`` with the
harness's settings, its output in a log file per process. How it is started
is :meth:`Workers.command`; an engine that runs deliveries elsewhere (a
broker's workers) plugs in by starting its own processes there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.db import sql, wait_for

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


@dataclass
class Worker:
    """One worker process, its log, and what the harness did to it."""

    number: int
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    killed_by_harness: bool = False
    peak_rss_kb: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.killed_by_harness = True
        self.process.send_signal(signum)

    def sample_rss(self) -> int:
        """Read the peak resident set (VmHWM) while the process lives, in KiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        except OSError:
            pass
        return self.peak_rss_kb

    def output(self, since: int = 0) -> str:
        """The process's output, from byte ``since`` of its log (see :meth:`mark`)."""
        with self.log.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def mark(self) -> int:
        """Where its log ends now: :meth:`output` from here is what follows."""
        return self.log.stat().st_size


class Workers:
    """Starts worker processes for one scenario and stops them all afterwards."""

    def __init__(self, alias: str, folder: Path, **env: str) -> None:
        self.alias = alias
        self.folder = folder
        self.env = env
        self.started: list[Worker] = []

    def command(self, concurrency: int, args: Sequence[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "django",
            "signalbox",
            "worker",
            "--database",
            self.alias,
            "--concurrency",
            str(concurrency),
            *args,
        ]

    def environment(self, src: Path = SRC, **env: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(src)]),
            "DJANGO_SETTINGS_MODULE": "tests.reliability.settings",
            "PYTHONUNBUFFERED": "1",
            "SIGNALBOX_REL_WORKER": "1",
            **self.env,
            **env,
        }

    def manage(self, *args: str, **env: str) -> str:
        """Run ``python -m django signalbox ARGS`` as a person would; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "django", "signalbox", *args],
            cwd=ROOT,
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(
        self,
        *,
        concurrency: int = 4,
        args: Sequence[str] = (),
        src: Path = SRC,
        **env: str,
    ) -> Worker:
        number = len(self.started) + 1
        log = self.folder / f"worker-{number}.log"
        environment = self.environment(
            src, SIGNALBOX_REL_APP=f"signalbox-rel-worker-{number}", **env
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(concurrency, args),
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(number, process, log, time.monotonic())
        self.started.append(worker)
        return worker

    def running(self) -> list[Worker]:
        return [worker for worker in self.started if worker.alive()]

    def signal_all(self, signum: int) -> None:
        for worker in self.running():
            worker.signal(signum)

    def sample_rss(self) -> None:
        for worker in self.running():
            worker.sample_rss()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every running worker and wait; SIGKILL what is left."""
        for worker in self.running():
            worker.signal(signal.SIGCONT)
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.started:
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(10)

    def unexpected_exits(self) -> list[str]:
        """Workers that exited without being told to, or exited non-zero on SIGTERM."""
        bad = []
        for worker in self.started:
            code = worker.process.poll()
            if code is None:
                continue
            if not worker.killed_by_harness or code not in (0, -signal.SIGKILL):
                bad.append(f"worker {worker.number} (pid {worker.pid}) exited {code}")
        return bad

    def logs(self) -> str:
        return "\n".join(worker.output() for worker in self.started)


def wait_registered(alias: str, workers: Sequence[Worker], timeout: float = 30) -> None:
    """Wait until each worker has written its heartbeat row (it is up and claiming)."""

    def up() -> bool:
        pids = {
            name.split(":")[1]
            for (name,) in sql(alias, "SELECT name FROM signalbox_workerrecord")
        }
        return all(str(worker.pid) in pids for worker in workers)

    wait_for(up, timeout, "the workers to start")
