"""Log formatting that keeps signalbox's warnings visible but short.

signalbox's warnings are full sentences with advice attached (which receiver,
how long, what to do about it). In a terminal that repeats the same slow call
on purpose, one short line per distinct warning is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

_LIMIT = 150  # characters of a shortened message


def first_sentence(text: str, limit: int = _LIMIT) -> str:
    """The first sentence of ``text``, cut to at most ``limit`` characters."""
    sentence, stop, _ = text.partition(". ")
    sentence += "." if stop else ""
    if len(sentence) > limit:
        return sentence[: limit - 3].rstrip() + "..."
    return sentence


class CompactFormatter(logging.Formatter):
    """One line per warning: ``WARNING logger: first sentence``.

    Records above WARNING (a failed on_commit receiver, say) are formatted in
    full, traceback included, because that is what someone has to act on.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record``, shortening warnings and lesser records to one line."""
        if record.levelno > logging.WARNING:
            return super().format(record)
        short = logging.makeLogRecord(record.__dict__)
        short.msg, short.args = first_sentence(record.getMessage()), None
        short.exc_info = short.exc_text = None
        return super().format(short)


class FirstOfEachWarning(logging.Filter):
    """Let each distinct warning through once per process; errors always pass.

    Two warnings are the same when they come from the same logger, with the
    same message template, about the same signal and receiver (signalbox
    puts both in the record as ``signalbox_signal`` and ``signalbox_receiver``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[Hashable] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` is an error or the first warning of its kind."""
        if record.levelno > logging.WARNING:
            return True
        kind = (
            record.name,
            str(record.msg),
            getattr(record, "signalbox_signal", None),
            getattr(record, "signalbox_receiver", None),
        )
        if kind in self._seen:
            return False
        self._seen.add(kind)
        return True
