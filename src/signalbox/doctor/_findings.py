"""What the doctor reports: findings, their severities, and what every rule reads."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from signalbox import inventory
from signalbox.doctor._scope import Scope


class Severity(enum.IntEnum):
    """How bad a finding is; ``--fail-on`` compares by this order."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        """The lower-case name, as the report and ``--fail-on`` spell it."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong, with its rule's stable id (``SB101``), the receiver
    key or outbox queue it is about, where to look (``file:line``, or ``-``
    for what lives in the database), why it matters and the fix."""

    id: str
    severity: Severity
    subject: str
    location: str
    why: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        """A JSON-ready form; its keys are part of ``--json``'s stable shape."""
        return {
            "id": self.id,
            "severity": self.severity.label,
            "subject": self.subject,
            "location": self.location,
            "why": self.why,
            "fix": self.fix,
        }


Connected = tuple[str, inventory.ReceiverListing, Callable[..., Any]]
"""A signal's name, a receiver's listing, and the function that runs."""


@dataclass
class Context:
    """What the rules read: which code counts as the project's, and which
    database's outbox to look at."""

    scope: Scope
    using: str

    @cached_property
    def receivers(self) -> list[Connected]:
        """Every connected receiver defined in a module of the scope."""
        return [
            row
            for row in inventory.connected_callables()
            if self.scope.holds(getattr(row[2], "__module__", None))
        ]


Rule = Callable[[Context], Iterable[Finding]]
"""A rule reads a :class:`Context` and yields what it finds; rules are
independent of each other, so a new one is one more function in the list."""
