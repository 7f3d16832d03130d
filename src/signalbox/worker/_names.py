"""How the processes that hold leases are named, in worker records and in
the rows they lease (``leased_by``): one scheme for the embedded worker, the
relay and every engine's task.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid


def process_name(prefix: str = "") -> str:
    """A name no other process uses: ``prefix`` then ``host:pid:random``.

    The random part tells apart two workers of one process (tests) and a
    pid the system reused.
    """
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def thread_name() -> str:
    """This thread's name as a lease holder: ``host:pid:thread``. An engine's
    task runs on whatever thread its worker gives it, so the thread is part
    of who holds the row."""
    return _thread_name(os.getpid(), threading.get_ident())


@functools.lru_cache(maxsize=64)
def _thread_name(pid: int, thread: int) -> str:
    return f"{socket.gethostname()}:{pid}:{thread}"
