"""The soak report: a Markdown table of every scenario's figures, and JSON lines."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.harness import ROOT

# The figures shown first in the table, when a scenario has them.
LEADING = (
    "sends_committed",
    "deliveries",
    "completed",
    "dead",
    "lost",
    "phantoms",
    "duplicates",
    "in_flight_at_faults",
)


def json_line(result: dict[str, Any]) -> str:
    return json.dumps(result, default=str)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _figures(figures: dict[str, Any]) -> str:
    keys = [k for k in LEADING if k in figures]
    keys += [k for k in figures if k not in keys]
    return "; ".join(f"{key} {_cell(figures[key])}" for key in keys)


def table(results: list[dict[str, Any]]) -> str:
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
        f"{platform.python_version()}).\n\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    body = table(results)
    lines = "\n".join(json_line(result) for result in results)
    target.write_text(f"{heading}{body}\n\n## JSON lines\n\n```json\n{lines}\n```\n")
    target.with_suffix(".jsonl").write_text(lines + "\n")
    return target
