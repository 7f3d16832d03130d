"""The invariant checker: SQL over the outbox, the ledger, the sends and the audit.

:func:`check` runs every invariant of docs/reliability.md after a scenario,
computes the standard figures, prints them as one JSON line and fails the
scenario on any violation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connections

from tests.reliability.db import scalar, sql, vendor

FULL = os.environ.get("SIGNALBOX_RELIABILITY", "ci") == "full"
RESULTS: list[dict[str, Any]] = []
"""Every scenario's figures, in order, for the session's report."""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Faults:
    """The windows in which the harness was hurting something."""

    windows: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def mark(self, kind: str, started: datetime, ended: datetime | None = None) -> None:
        self.windows.append((kind, started, ended or started))

    def instant(self, kind: str) -> None:
        self.mark(kind, now())


DEAD_REASONS = (
    "max_attempts",
    "not_retryable",
    "decode_error",
    "unknown_receiver",
    "lease_expired",
)


def _stamp(alias: str, moment: datetime) -> str:
    if vendor(alias) == "postgresql":
        return moment.isoformat()
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# Each invariant: a query that returns the ids (delivery, send or ledger) that
# violate it. %(slack)s is the lease plus a margin: how long after a fault an
# execution still counts as "in flight at the fault".
INVARIANTS: dict[str, str] = {
    "I1 committed send without all its deliveries": """
        SELECT s.send_id FROM reliability_sends s LEFT JOIN (
            SELECT {send_id} AS send_id, count(*) AS n FROM signalbox_delivery d
            GROUP BY 1
            UNION ALL
            SELECT send_id, count(*) FROM reliability_audit WHERE op = 'delete'
            GROUP BY 1
        ) r ON r.send_id = s.send_id
        GROUP BY s.send_id, s.expected HAVING coalesce(sum(r.n), 0) <> s.expected""",
    "I1 delivery of a committed send not completed or dead": """
        SELECT d.id FROM signalbox_delivery d
        WHERE {send_id} IN (SELECT send_id FROM reliability_sends)
          AND d.state NOT IN ('completed', 'dead')
          AND NOT (d.state = 'scheduled' AND E(d.scheduled_at) > E({now}) + 60)""",
    "I1 row deleted before it finished": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'delete' AND a.old_state NOT IN ('completed', 'dead')""",
    "I2 delivery from a rolled-back send": """
        SELECT d.id FROM signalbox_delivery d
        WHERE {send_id} IS NOT NULL
          AND {send_id} NOT IN (SELECT send_id FROM reliability_sends)""",
    "I2 execution from a rolled-back send": """
        SELECT l.id FROM reliability_ledger l WHERE l.send_id IS NOT NULL
          AND l.send_id NOT IN (SELECT send_id FROM reliability_sends)""",
    "I3 executing past its lease": """
        SELECT d.id FROM signalbox_delivery d
        WHERE d.state = 'executing' AND E(d.lease_expires_at) < E({now})""",
    "I4 more attempts than the limit": """
        SELECT d.id FROM signalbox_delivery d WHERE d.attempt > d.max_attempts
        UNION
        SELECT d.id FROM signalbox_delivery d JOIN reliability_ledger l
            ON l.delivery_id = d.id WHERE l.attempt > d.max_attempts""",
    "I4 dead early or without a reason": """
        SELECT d.id FROM signalbox_delivery d WHERE d.state = 'dead' AND (
            d.reason NOT IN (%(reasons)s)
            OR d.error = ''
            OR (d.reason IN ('max_attempts', 'lease_expired')
                AND d.attempt < d.max_attempts))""",
    "I5 duplicate execution not in flight at a fault": """
        SELECT l.id FROM reliability_ledger l
        WHERE l.kind = 'effect' AND NOT l.atomic
          AND EXISTS (SELECT 1 FROM reliability_ledger later
                      WHERE later.delivery_id = l.delivery_id AND later.kind = 'effect'
                        AND later.id > l.id)
          AND NOT EXISTS (
              SELECT 1 FROM reliability_faults f
              WHERE E(l.started_at) <= E(f.ended_at) + %(slack)s
                AND (l.ended_at IS NULL
                     OR E(l.ended_at) + %(slack)s >= E(f.started_at)))""",
    "I6 atomic receiver without exactly one effect": """
        SELECT d.id FROM signalbox_delivery d
        LEFT JOIN reliability_ledger l
            ON l.delivery_id = d.id AND l.kind = 'effect' AND l.atomic
        WHERE d.receiver IN (%(atomic)s)
        GROUP BY d.id, d.state
        HAVING count(l.id) <> (CASE WHEN d.state = 'completed' THEN 1 ELSE 0 END)""",
    "I7 execution before its send committed": """
        SELECT l.id FROM reliability_ledger l
        JOIN reliability_sends s ON s.send_id = l.send_id
        WHERE E(l.started_at) <= E(s.written_at)""",
    "I7 execution before its scheduled time": """
        SELECT l.id FROM reliability_ledger l
        JOIN reliability_sends s ON s.send_id = l.send_id
        JOIN signalbox_delivery d ON d.id = l.delivery_id
        WHERE l.attempt = 1
          AND E(l.started_at) + 0.002 < E(d.enqueued_at) + s.delay_s""",
    "I8 completion without a finished execution of that claim": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
          AND NOT EXISTS (
              SELECT 1 FROM reliability_ledger l
              WHERE l.delivery_id = a.delivery_id AND l.attempt = a.old_attempt
                AND l.ended_at IS NOT NULL AND E(l.ended_at) <= E(a.at) + 0.002)""",
    "I8 completion of a row that was not executing": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
          AND a.old_state <> 'executing'""",
    "I8 double completion": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
        GROUP BY a.delivery_id HAVING count(*) > 1""",
}

# Figures that count invariant violations, by the invariants' names.
SUMMARY: dict[str, tuple[str, ...]] = {
    "lost": ("I1",),
    "phantoms": ("I2",),
    "stuck": ("I3",),
    "over_the_limit_or_dead_early": ("I4",),
    "unexplained_duplicates": ("I5",),
    "atomic_not_exactly_once": ("I6",),
    "early_executions": ("I7",),
    "stale_acks_applied": (
        "I8 completion without a finished execution",
        "I8 completion of a row that was not executing",
    ),
    "double_completions": ("I8 double completion",),
}

FIGURES: dict[str, str] = {
    "sends_committed": "SELECT count(*) FROM reliability_sends",
    "deliveries": "SELECT count(*) FROM signalbox_delivery",
    "completed": "SELECT count(*) FROM signalbox_delivery WHERE state = 'completed'",
    "dead": "SELECT count(*) FROM signalbox_delivery WHERE state = 'dead'",
    "executions": "SELECT count(*) FROM reliability_ledger WHERE kind = 'effect'",
    "attempts_seen": "SELECT count(*) FROM reliability_ledger WHERE kind = 'probe'",
    "duplicates": """
        SELECT count(*) FROM (SELECT delivery_id FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id HAVING count(*) > 1) x""",
    "in_flight_at_faults": """
        SELECT count(DISTINCT l.delivery_id) FROM reliability_ledger l
        JOIN reliability_faults f
          ON E(l.started_at) <= E(f.ended_at)
         AND (l.ended_at IS NULL OR E(l.ended_at) >= E(f.started_at))
        WHERE l.kind IN ('effect', 'probe')""",
    "completed_twice": """
        SELECT count(*) FROM (SELECT delivery_id FROM reliability_ledger
            WHERE kind = 'effect' AND ended_at IS NOT NULL
            GROUP BY delivery_id HAVING count(*) > 1) x""",
    "stale_executions": "SELECT count(*) FROM reliability_ledger WHERE taken_over",
    "leases_rescued": """
        SELECT count(*) FROM reliability_audit WHERE op = 'update'
        AND old_state = 'executing' AND new_reason = 'lease_expired'""",
    "completions_applied": """
        SELECT count(*) FROM reliability_audit WHERE op = 'update'
        AND new_state = 'completed'""",
    "executions_per_delivery_max": """
        SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id) x""",
    "executions_per_delivery_min": """
        SELECT coalesce(min(n), 0) FROM (SELECT count(*) AS n FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id) x""",
}


@dataclass
class Result:
    scenario: str
    engine: str
    figures: dict[str, Any]
    violations: dict[str, list[Any]]

    def line(self) -> str:
        return json.dumps(
            {
                "scenario": self.scenario,
                "size": "full" if FULL else "ci",
                "engine": self.engine,
                "figures": self.figures,
                "violations": self.violations,
            },
            default=str,
            sort_keys=False,
        )


def check(
    alias: str,
    scenario: str,
    *,
    faults: Faults | None = None,
    figures: dict[str, Any] | None = None,
    lease: float = 1.0,
) -> Result:
    """Run every invariant and the standard figures; print one JSON line.

    ``figures`` are the scenario's own, merged in; ``lease`` is the longest
    lease the scenario's workers had. Any violation fails the scenario.
    """
    connections[alias].close()
    faults = faults or Faults()
    for kind, started, ended in faults.windows:
        sql(
            alias,
            "INSERT INTO reliability_faults (kind, started_at, ended_at) "
            "VALUES (%s, %s, %s)",
            [kind, _stamp(alias, started), _stamp(alias, ended)],
        )
    atomic = ", ".join(f"'{key}'" for key in _atomic_keys()) or "''"
    reasons = ", ".join(f"'{reason}'" for reason in DEAD_REASONS)
    values = {"slack": str(lease + 2.0), "atomic": atomic, "reasons": reasons}
    violations: dict[str, list[Any]] = {}
    counted: dict[str, int] = {}
    for name, query in INVARIANTS.items():
        found = [row[0] for row in sql(alias, query % values)]
        counted[name] = len(found)
        if found:
            violations[name] = sorted(found)[:10] + (
                [f"... {len(found)} in all"] if len(found) > 10 else []
            )
    measured: dict[str, Any] = {
        figure: sum(n for name, n in counted.items() if name.startswith(prefixes))
        for figure, prefixes in SUMMARY.items()
    }
    measured.update(
        {
            name: _number(scalar(alias, query % values))
            for name, query in FIGURES.items()
        }
    )
    measured["dead_by_reason"] = dict(
        sql(
            alias,
            "SELECT reason, count(*) FROM signalbox_delivery WHERE state = 'dead' "
            "GROUP BY 1 ORDER BY 1",
        )
    )
    measured["faults"] = len(faults.windows)
    measured.update(figures or {})
    result = Result(scenario, vendor(alias), measured, violations)
    RESULTS.append(json.loads(result.line()))
    print(result.line(), flush=True)
    assert not violations, f"{scenario}: invariants violated: {violations}"
    return result


def _number(value: Any) -> Any:
    if value is None:
        return None
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return value
    return int(as_float) if as_float.is_integer() else round(as_float, 3) + 0.0


def _atomic_keys() -> list[str]:
    from signalbox import registry

    return sorted(
        key
        for key, found in registry.registry.background().items()
        if any(
            each.info.policy is not None and each.info.policy.atomic for each in found
        )
    )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
