"""``manage.py signalbox doctor``: what in a project makes signals slow or
fragile, as findings with stable ids.

Each rule is an independent function from a :class:`Context` to findings
(:data:`RULES`): rules that read receiver stats (a measured p95 over
``SLOW_RECEIVER_MS``, a blocked event loop, sends per request) join the list
when stats exist. Rules that read only code are also system checks
(:data:`CHECKS`), so ``manage.py check`` shows them.

| module | what it holds |
| --- | --- |
| ``_findings`` | :class:`Finding`, :class:`Severity`, :class:`Context` |
| ``_scope`` | which modules are the project's |
| ``_calls`` | reading a function's code for blocking I/O |
| ``_weak`` | weak connections nothing else holds, from the source |
| ``_receiver_rules`` | the rules about connected receivers |
| ``_outbox_rules`` | the rules about rows that wait |
| ``_run`` | the list of rules, and running them |
| ``_render`` | the report as text and as JSON |
| ``_command`` | ``signalbox doctor``'s options, and what it prints |
"""

from __future__ import annotations

from signalbox.doctor._command import add_arguments, command_report
from signalbox.doctor._findings import Context, Finding, Rule, Severity
from signalbox.doctor._render import as_dict, as_text
from signalbox.doctor._run import (
    CHECKS,
    CODE_RULES,
    OUTBOX_RULES,
    RULES,
    diagnose,
    failing,
)
from signalbox.doctor._scope import Scope

__all__ = [
    "CHECKS",
    "CODE_RULES",
    "OUTBOX_RULES",
    "RULES",
    "Context",
    "Finding",
    "Rule",
    "Scope",
    "Severity",
    "add_arguments",
    "as_dict",
    "as_text",
    "command_report",
    "diagnose",
    "failing",
]
