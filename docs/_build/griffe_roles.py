"""Griffe extensions for the API reference: Sphinx roles read as code, and
methods made by a factory shown as methods.

signalbox's docstrings follow Django's and write cross-references as Sphinx
roles (``:class:`~signalbox.Retry```); mkdocstrings renders Markdown, where
such a role would show as ``:class:`` before the name. This keeps the name
as code (its last part for a ``~`` target, as Sphinx shows it).
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite every docstring's Sphinx roles as Markdown code."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)


class MadeMethods(griffe.Extension):
    """Show ``Signal.send`` and ``send_robust`` as the methods they are.

    ``dispatch.py`` makes both with ``_sending(robust=..., doc=...)`` so a
    send costs no extra call; read statically they are attributes whose
    value is that call. This turns each into a method ``name(sender,
    **named)`` whose docstring is the ``doc`` the call passes.
    """

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        for name, member in list(cls.members.items()):
            doc = _made_doc(member)
            if doc is None:
                continue
            method = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=griffe.Parameters(
                    griffe.Parameter(
                        "self", kind=griffe.ParameterKind.positional_or_keyword
                    ),
                    griffe.Parameter(
                        "sender", kind=griffe.ParameterKind.positional_or_keyword
                    ),
                    griffe.Parameter("named", kind=griffe.ParameterKind.var_keyword),
                ),
            )
            method.docstring = griffe.Docstring(
                _ROLE.sub(_as_code, inspect.cleandoc(doc)), parent=method
            )
            cls.set_member(name, method)


def _made_doc(member: object) -> str | None:
    value = getattr(member, "value", None)
    if not isinstance(value, griffe.ExprCall) or str(value.function) != "_sending":
        return None
    for argument in value.arguments:
        if isinstance(argument, griffe.ExprKeyword) and argument.name == "doc":
            return str(ast.literal_eval(str(argument.value)))
    return None
