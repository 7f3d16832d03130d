"""What a capture records: each send, and what happened at each receiver."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.dispatch import Signal as DjangoSignal

from signalbox.registry import Run

Background = Literal["manual", "inline"]
"""How a capture treats background receivers: their rows wait for
:func:`~signalbox.testing.drain` (``"manual"``), or run at once (``"inline"``)."""


class Happened(enum.Enum):
    """What became of one receiver in one send."""

    RAN = "ran"
    """It ran (inline, or an on-commit receiver at once or after the commit)."""
    RAISED = "raised"
    """It raised :attr:`Reached.error`."""
    ON_COMMIT = "on_commit"
    """An on-commit receiver waiting for its transaction to commit."""
    WRITTEN = "written"
    """A background receiver's row was written to the outbox
    (:attr:`Reached.delivery_id`)."""


@dataclass(eq=False)
class Reached:
    """One receiver that one send reached, and what happened there."""

    receiver: Callable[..., Any]
    """The function that was connected."""
    key: str
    """Its registry key (``module.qualname``, or its ``dispatch_uid``)."""
    run: Run
    """Its mode."""
    happened: Happened = Happened.RAN
    response: Any = None
    """What it returned (inline receivers)."""
    error: BaseException | None = None
    """What it raised, when :attr:`happened` is ``RAISED``."""
    after_commit: bool = False
    """It ran once its transaction committed (on-commit receivers)."""
    delivery_id: int | None = None
    """The outbox row written for it (background receivers)."""
    using: str | None = None
    """The database its row (or its on-commit callback) went to."""


@dataclass(eq=False)
class Sent:
    """One send: the signal, its sender and arguments, and the receivers reached."""

    signal: DjangoSignal
    sender: Any
    kwargs: dict[str, Any]
    receivers: list[Reached] = field(default_factory=list)

    def reached(self, receiver: Callable[..., Any] | str) -> Reached | None:
        """What happened at ``receiver`` (a function or a key), or None."""
        for each in self.receivers:
            if _names(each, receiver):
                return each
        return None


def _names(reached: Reached, receiver: Callable[..., Any] | str) -> bool:
    if isinstance(receiver, str):
        return reached.key == receiver
    return reached.receiver is receiver or reached.receiver == receiver
