"""The run modes as data: what each value of ``run=`` means.

One row per mode says which adapter connects a receiver of that mode, whether
the receiver must be findable by key from another process, which options it
takes, and how ``signalbox list`` describes it. Adding a mode means a value
in :data:`signalbox.registry.Run`, a row in :data:`MODES`, and its adapter in
:mod:`signalbox._adapters`; :func:`signalbox.connect` reads everything else
from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from signalbox._adapters import (
    Adapter,
    BackgroundReceiver,
    OnCommitReceiver,
    TimedReceiver,
)
from signalbox._travel import OPTIONS as TRAVEL_OPTIONS
from signalbox.exceptions import ReceiverError
from signalbox.registry import RUN_MODES, Run


@dataclass(frozen=True, slots=True)
class Mode:
    """How one value of ``run=`` connects and runs a receiver."""

    adapter: type[Adapter]
    """Connects the receiver (its :meth:`~Adapter.fitting` picks the variant)."""
    direct: bool = False
    """A signalbox Signal connects the receiver itself, with no adapter."""
    keyed: bool = False
    """Another process finds the receiver again by its key: it must be
    findable, it is held strongly, and ``list`` flags the arguments that
    cannot travel to it."""
    travel: tuple[str, ...] = ()
    """The options of what travels (``prepare=``, ...) that it takes."""
    policy: bool = False
    """It takes the queueing options (``engine=``, ``queue=``, ...)."""
    batched: bool = False
    """Its receivers write outbox rows: from two on, a send batches them."""

    def takes(self) -> str:
        """The options this mode takes, in words, for an error message."""
        if self.policy:
            return "queueing and travel options"
        if self.travel:
            return f"only {' and '.join(self.travel)}"
        return "no options"


MODES: Final[Mapping[Run, Mode]] = MappingProxyType(
    {
        "inline": Mode(adapter=TimedReceiver, direct=True),
        "on_commit": Mode(adapter=OnCommitReceiver, travel=("prepare", "exclude")),
        "background": Mode(
            adapter=BackgroundReceiver,
            keyed=True,
            travel=TRAVEL_OPTIONS,
            policy=True,
            batched=True,
        ),
    }
)
assert tuple(MODES) == RUN_MODES, "every value of Run needs a row in MODES"


def mode(run: object) -> tuple[Run, Mode]:
    """``run`` and its row, if it is a known mode; else raise naming the known ones."""
    if run not in MODES:
        raise ReceiverError(
            f"run={run!r} is not a mode signalbox knows; use one of "
            f"{', '.join(repr(known) for known in MODES)}."
        )
    return run, MODES[run]  # type: ignore[index,return-value]
