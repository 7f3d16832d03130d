"""Where a drain's CPU time went, by kind of process, read from Linux's /proc.

A throughput figure on a small shared machine says little by itself: the
same drain can run a quarter slower a minute later. What each kind of
process spent per delivery (Celery's parent, its pool processes, the
PostgreSQL backends of the benchmark's database, Redis, the rest) says
where a difference comes from. Processes that started or ended between two
readings count from zero or up to their last reading; a process's time is
what the kernel charged it (user and system).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class Reading:
    """CPU seconds per process id, and its kind, at one moment; and the
    whole machine's busy seconds (every CPU, every process, the kernel's
    own work included)."""

    seconds: dict[int, float]
    kinds: dict[int, str]
    busy: float


def available() -> bool:
    """Whether this machine has a /proc to read (Linux)."""
    return (_PROC / "stat").exists()


def read(database: str) -> Reading:
    """Every process's CPU time so far; ``database`` names the backends to count."""
    tick = os.sysconf("SC_CLK_TCK")
    raw: dict[int, tuple[str, int, float]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent, user, system = int(fields[1]), int(fields[11]), int(fields[12])
        raw[int(entry.name)] = (command, parent, (user + system) / tick)
    celery = {pid for pid, (command, _, _) in raw.items() if _is_celery(command)}
    kinds = {
        pid: _kind(pid, command, parent, celery, database)
        for pid, (command, parent, _) in raw.items()
    }
    times = [int(each) for each in (_PROC / "stat").read_text().split()[1:9]]
    busy = (sum(times) - times[3] - times[4]) / tick  # all but idle and iowait
    return Reading({pid: each[2] for pid, each in raw.items()}, kinds, busy)


def per_delivery(before: Reading, after: Reading, deliveries: int) -> dict[str, int]:
    """Microseconds of CPU per delivery by kind of process between two
    readings, and the whole machine's as ``"machine"``."""
    spent: dict[str, float] = {"machine": after.busy - before.busy}
    for pid, seconds in after.seconds.items():
        kind = after.kinds[pid]
        spent[kind] = spent.get(kind, 0.0) + seconds - before.seconds.get(pid, 0.0)
    return {
        kind: round(seconds / deliveries * 1e6)
        for kind, seconds in sorted(spent.items())
        if seconds > 0
    }


def _is_celery(command: str) -> bool:
    return "celery" in command and " worker" in command


def _kind(pid: int, command: str, parent: int, celery: set[int], database: str) -> str:
    if pid in celery:
        return "celery pool" if parent in celery else "celery parent"
    if command.startswith("postgres:"):
        return "postgres (bench)" if f" {database} " in command else "postgres (other)"
    if "redis-server" in command:
        return "redis"
    return "driver" if pid == os.getpid() else "other"
