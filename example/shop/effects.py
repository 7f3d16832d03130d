"""What the receivers did, and when: a stand-in for mail servers, caches and sockets.

The example has no SMTP server, cache cluster or websocket, so each receiver
records the effect it would have had here, with the moment it happened and the
thread and process it happened in. The demo reads these records to tell when
the e-mail went out relative to the commit and the response.

A background receiver runs in the worker, another process, whose memory the
demo cannot read. A process whose environment names a file in
``SHOP_EFFECTS_JOURNAL`` therefore also appends each record to that file, one
JSON line each; the demo gives the worker it starts such a file, and passes it
to :func:`find` and :func:`find_all`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

JOURNAL: Final = "SHOP_EFFECTS_JOURNAL"
"""The environment variable naming the file this process also records into."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One thing a receiver did for one order."""

    what: str
    order: str
    at: float
    """``time.perf_counter()`` when it happened, in the process that reads it."""
    thread: int
    """``threading.get_ident()`` of the thread it happened in."""
    process: int
    """``os.getpid()`` of the process it happened in."""
    on_event_loop: bool
    """Whether that thread was running an event loop at the time."""
    attempt: int | None = None
    """Which attempt of a background delivery this was; None outside one."""


_lock = threading.Lock()
_effects: list[Effect] = []


def record(what: str, order: str, *, attempt: int | None = None) -> None:
    """Record that ``what`` happened for the order numbered ``order``, now."""
    effect = Effect(
        what=what,
        order=order,
        at=time.perf_counter(),
        thread=threading.get_ident(),
        process=os.getpid(),
        on_event_loop=_event_loop_running(),
        attempt=attempt,
    )
    journal = os.environ.get(JOURNAL)
    with _lock:
        _effects.append(effect)
        if journal:
            # perf_counter() means nothing in another process; the wall clock does.
            line = {**asdict(effect), "at": time.time()}
            with Path(journal).open("a", encoding="utf-8") as file:
                file.write(json.dumps(line) + "\n")


def find(what: str, order: str, *, journal: Path | None = None) -> Effect | None:
    """The first ``what`` recorded for ``order``, or None if it has not happened.

    Looks in this process's records, then in ``journal`` if given.
    """
    found = find_all(what, order, journal=journal)
    return found[0] if found else None


def find_all(what: str, order: str, *, journal: Path | None = None) -> list[Effect]:
    """Every ``what`` recorded for ``order`` (here, then in ``journal``), in order."""
    with _lock:
        found = [e for e in _effects if e.what == what and e.order == order]
    if journal is not None:
        found += [e for e in read(journal) if e.what == what and e.order == order]
    return found


def clear() -> None:
    """Forget everything recorded so far in this process."""
    with _lock:
        _effects.clear()


def read(journal: Path) -> list[Effect]:
    """The effects another process recorded in ``journal``, on this process's clock."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    offset = time.perf_counter() - time.time()
    effects = []
    for line in lines:
        if not line.endswith("}"):
            continue  # a line still being written
        fields = json.loads(line)
        effects.append(Effect(**{**fields, "at": fields["at"] + offset}))
    return effects


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
