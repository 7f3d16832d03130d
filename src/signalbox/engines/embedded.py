"""The embedded worker as an engine: ``manage.py signalbox worker``.

It is the default when ``SIGNALBOX["ENGINES"]`` is not set. Nothing is handed
to it: its workers claim their rows from the outbox themselves, woken by
PostgreSQL's ``NOTIFY`` or by polling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from signalbox import outbox
from signalbox.engines import Engine


class EmbeddedEngine(Engine):
    """Rows its workers claim themselves; takes no options."""

    embedded: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True
    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        flags = "(the worker's are flags: manage.py signalbox worker --help)"
        self.check_options({}, flags)

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Nothing to do: the embedded worker claims its rows itself."""

    def worker_hint(self, queues: Sequence[str]) -> str:
        """``manage.py signalbox worker`` on those queues."""
        names = ",".join(sorted(set(queues)))
        return f"`manage.py signalbox worker --queues {names}`"
