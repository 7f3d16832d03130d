"""The doctor's report, for people and for machines."""

from __future__ import annotations

from collections import Counter
from typing import Any

from signalbox.doctor._findings import Finding, Severity


def as_dict(findings: list[Finding], rules: list[str]) -> dict[str, Any]:
    """The report's stable JSON shape: ``findings`` (each with ``id``,
    ``severity``, ``subject``, ``location``, ``why``, ``fix``), ``counts`` by
    severity (every severity present, zeros included) and ``rules``, the
    names of the rules that ran."""
    counts = Counter(f.severity.label for f in findings)
    return {
        "findings": [f.as_dict() for f in findings],
        "counts": {s.label: counts.get(s.label, 0) for s in reversed(Severity)},
        "rules": rules,
    }


def as_text(findings: list[Finding]) -> str:
    """One block per finding, then a count by severity."""
    if not findings:
        return "No findings."
    blocks = []
    for f in findings:
        blocks.append(
            f"{f.id} {f.severity.label}: {f.subject}\n"
            f"  at {f.location}\n"
            f"  {f.why}\n"
            f"  fix: {f.fix}"
        )
    counts = Counter(f.severity for f in findings)
    summary = ", ".join(
        f"{counts[s]} {s.label}{'s' * (counts[s] != 1)}"
        for s in reversed(Severity)
        if counts[s]
    )
    total = f"{len(findings)} finding{'s' * (len(findings) != 1)}"
    return "\n\n".join(blocks) + f"\n\n{total}: {summary}."
