"""An engine for tests: it records what it is handed, and can refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from signalbox import outbox
from signalbox.engines import Engine


class RecordingEngine(Engine):
    """Takes hand-overs into ``handed`` (or raises while ``down`` is set)."""

    supports_queues: ClassVar[bool] = True
    handed: ClassVar[list[outbox.Handover]] = []
    down: ClassVar[bool] = False

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        if RecordingEngine.down:
            raise ConnectionError("the broker is down")
        RecordingEngine.handed.extend(handovers)
