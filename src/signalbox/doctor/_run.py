"""The list of rules, which of them are system checks, and running them."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, DatabaseError

from signalbox.doctor._findings import Context, Finding, Rule, Severity
from signalbox.doctor._outbox_rules import (
    relay_missing,
    unconsumed_queues,
    unknown_receivers,
    worker_skew,
)
from signalbox.doctor._receiver_rules import (
    blocking_io,
    duplicate_connections,
    untravelled_arguments,
)
from signalbox.doctor._scope import Scope
from signalbox.doctor._weak import weak_receivers

CODE_RULES: tuple[Rule, ...] = (
    blocking_io,
    weak_receivers,
    duplicate_connections,
    untravelled_arguments,
)
"""Rules that read only this process's code and connections."""

OUTBOX_RULES: tuple[Rule, ...] = (
    unknown_receivers,
    unconsumed_queues,
    relay_missing,
    worker_skew,
)
"""Rules that read the outbox and the workers' records."""

RULES: tuple[Rule, ...] = CODE_RULES + OUTBOX_RULES
"""Every rule, in the order they run (the report lists findings worst first)."""

CHECKS: dict[str, tuple[Rule, str]] = {
    "SB101": (blocking_io, "signalbox.W020"),
    "SB111": (weak_receivers, "signalbox.W021"),
    "SB112": (duplicate_connections, "signalbox.W022"),
}
"""The code rules that are system checks too, by finding id, with the check
id (SB120 is signalbox.W010 already)."""


def diagnose(
    scope: Scope | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    rules: tuple[Rule, ...] = RULES,
) -> list[Finding]:
    """Run ``rules`` over ``scope`` (the whole project by default) and the
    outbox of database ``using``; every finding, the worst first.

    An outbox that cannot be read (no table before ``migrate``, no server)
    is one info finding, SB190, not an error: the code rules still report.
    """
    context = Context(scope=scope or Scope(), using=using)
    found: list[Finding] = []
    for rule in rules:
        try:
            found.extend(rule(context))
        except DatabaseError as error:
            found.append(_unreadable(using, error))
            break
    return sorted(found, key=lambda f: (-f.severity, f.id, f.subject))


def _unreadable(using: str, error: DatabaseError) -> Finding:
    return Finding(
        id="SB190",
        severity=Severity.INFO,
        subject=f"database {using!r}",
        location="-",
        why=f"The outbox could not be read ({type(error).__name__}), so the "
        "rules about waiting rows did not run.",
        fix="Run `manage.py migrate`, or pass --database with a reachable alias.",
    )


def failing(findings: list[Finding], fail_on: str | None) -> list[Finding]:
    """The findings at or above severity ``fail_on`` (``"warning"`` or
    ``"error"``); none when ``fail_on`` is None. ``--fail-on`` exits 1 when
    this is not empty."""
    if fail_on is None:
        return []
    threshold = Severity[fail_on.upper()]
    return [f for f in findings if f.severity >= threshold]
