"""The run modes as data: what each value of ``run=`` means.

One row per mode says which adapter connects a receiver of that mode, whether
the receiver must be findable by key from another process, which options it
takes, and how ``signalbox list`` describes it; :func:`describe` turns a
connect's arguments into what the registry records, by the row. Adding a mode
means a value in :data:`signalbox.registry.Run`, a row in :data:`MODES`, and
its adapter in :mod:`signalbox._adapters`; :func:`signalbox.connect` reads
everything else from here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from django.dispatch import Signal as DjangoSignal

from signalbox import conf, registry
from signalbox._adapters import (
    Adapter,
    BackgroundReceiver,
    OnCommitReceiver,
    TimedReceiver,
)
from signalbox._travel import OPTIONS as TRAVEL_OPTIONS
from signalbox._travel import Travel
from signalbox.exceptions import ReceiverError
from signalbox.policy import Policy
from signalbox.registry import RUN_MODES, ReceiverInfo, Run


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


def describe(
    signal: DjangoSignal,
    receiver: Callable[..., Any],
    sender: object,
    dispatch_uid: Hashable,
    run: Run,
    row: Mode,
    options: dict[str, Any],
) -> ReceiverInfo:
    """What the registry records for ``receiver`` connected in mode ``run``.

    Checks the options against the mode's ``row``, and that a keyed mode's
    receiver can be found again by its key; raises
    :class:`~signalbox.ReceiverError` naming the receiver and signal otherwise.
    """
    options = dict(options)
    try:
        travel = Travel.from_options(run, options, row.travel)
    except ReceiverError as error:
        raise ReceiverError(str(error), receiver=receiver, signal=signal) from None
    if options and not row.policy:
        raise ReceiverError(
            f"run={run!r} takes {row.takes()}, but got {sorted(options)}.",
            receiver=receiver,
            signal=signal,
        )
    key = registry.receiver_key(receiver, dispatch_uid)
    if row.keyed:
        registry.require_findable(receiver, run, key)
    policy = Policy.from_options(options) if row.policy else None
    configured = conf.get().engines
    if policy is not None and policy.engine not in configured:
        raise ReceiverError(
            f"engine={policy.engine!r} is not in settings.SIGNALBOX['ENGINES'], "
            f"whose aliases are {sorted(configured)}.",
            receiver=receiver,
            signal=signal,
        )
    return ReceiverInfo(
        key=key,
        run=run,
        sender=registry.describe_sender(sender),
        location=registry.source_location(receiver),
        policy=policy,
        travel=travel,
        keyed=row.keyed,
    )
