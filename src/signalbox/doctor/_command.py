"""``manage.py signalbox doctor``: its options, and what it prints."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from django.db import DEFAULT_DB_ALIAS

from signalbox.doctor._render import as_dict, as_text
from signalbox.doctor._run import RULES, diagnose, failing
from signalbox.doctor._scope import Scope


def add_arguments(parser: CommandParser) -> None:
    """The options of ``signalbox doctor``."""
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.add_argument(
        "--fail-on",
        choices=["warning", "error"],
        help="Exit 1 on a finding this severe or worse.",
    )
    parser.add_argument(
        "--modules",
        default="",
        help="Comma-separated module prefixes to read (default: the project's).",
    )
    parser.add_argument("--database", default=DEFAULT_DB_ALIAS)


def command_report(options: dict[str, Any]) -> tuple[str, str | None]:
    """What ``signalbox doctor`` prints for ``options``, and why it must exit 1
    (a finding at or above ``--fail-on``), or None."""
    prefixes = tuple(p for p in options["modules"].split(",") if p)
    found = diagnose(Scope(prefixes), using=options["database"])
    if options["json"]:
        rules = [rule.__name__ for rule in RULES]
        report = json.dumps(as_dict(found, rules), indent=2)
    else:
        report = as_text(found)
    failed = failing(found, options["fail_on"])
    if not failed:
        return report, None
    count = f"{len(failed)} finding{'s' * (len(failed) != 1)}"
    return report, f"{count} at or above --fail-on {options['fail_on']}."
