"""The soak report: a Markdown table of every scenario's figures, and JSON lines."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.invariants import FIGURES, SUMMARY
from tests.reliability.processes import ROOT

# The checker's own figures shown in the table, first, when they are not
# zero (lost and phantoms always); the scenario's own figures follow. Every
# figure is in the JSON lines.
LEADING = (
    "sends_committed",
    "deliveries",
    "completed",
    "dead",
    "dead_by_reason",
    "lost",
    "phantoms",
    "duplicates",
    "in_flight_at_faults",
    "completed_twice",
    "leases_rescued",
    "stale_executions",
    "stale_acks_applied",
    "double_completions",
)
ALWAYS = ("lost", "phantoms")


def json_line(result: dict[str, Any]) -> str:
    return json.dumps(result, default=str)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _figures(figures: dict[str, Any]) -> str:
    standard = set(FIGURES) | set(SUMMARY) | {"dead_by_reason", "faults"}
    keys = [k for k in LEADING if k in figures and (figures[k] or k in ALWAYS)]
    keys += [k for k in figures if k not in standard]
    return "; ".join(f"{key.replace('_', ' ')} {_cell(figures[key])}" for key in keys)


GROUPS = (
    "workers",
    "receivers",
    "database",
    "concurrency",
    "bad input",
    "housekeeping",
)


def _group(result: dict[str, Any]) -> int:
    prefix = result["scenario"].split(":")[0]
    return GROUPS.index(prefix) if prefix in GROUPS else len(GROUPS)


def table(results: list[dict[str, Any]]) -> str:
    results = sorted(results, key=_group)
    lines = [
        "| scenario | engine | invariants | figures |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        verdict = (
            "all hold"
            if not result["violations"]
            else "VIOLATED: " + ", ".join(result["violations"])
        )
        lines.append(
            f"| {result['scenario']} | {result['engine']} | {verdict} "
            f"| {_figures(result['figures'])} |"
        )
    return "\n".join(lines)


START, END = "<!-- soak-table -->", "<!-- /soak-table -->"


def refresh_docs(docs: Path, report: Path, results: list[dict[str, Any]]) -> None:
    """Put the table of ``results`` in ``docs``, between the soak-table markers."""
    text = docs.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    first_lines = report.read_text().split("\n\n")[1]  # the "Run ... at commit" line
    docs.write_text(f"{before}{START}\n{first_lines}\n\n{table(results)}\n{END}{after}")


def _load() -> str:
    """The machine's load as the run ends: throughput figures depend on it, and
    the machine may be shared."""
    one, five, fifteen = os.getloadavg()
    return (
        f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1, 5, 15 min) "
        f"on {os.cpu_count()} cores at the end"
    )


def write(target: Path, results: list[dict[str, Any]]) -> Path:
    """Write the Markdown report to ``target`` and the JSON lines beside it."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    size = results[0]["size"] if results else "?"
    heading = (
        f"# Reliability scenarios ({size} size)\n\n"
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit {commit or '?'} "
        f"on {platform.node() or 'this machine'} (Python "
        f"{platform.python_version()}); {_load()}.\n\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    body = table(results)
    lines = "\n".join(json_line(r) for r in sorted(results, key=_group))
    target.write_text(f"{heading}{body}\n\n## JSON lines\n\n```json\n{lines}\n```\n")
    target.with_suffix(".jsonl").write_text(lines + "\n")
    return target
