"""SB111: receivers connected weakly that nothing else holds.

A signal holds its receivers weakly unless told ``weak=False``. A lambda, a
function defined inside the function that connects it, or a method of an
object made for the call (``Handler().on_save``) is held by nothing else:
it is collected as soon as the connecting code returns, and never runs, with
no error. Once collected it is no longer connected, so this is found by
reading the source of the project's modules (``connect(...)`` calls and
``@receiver`` decorators), not by asking the signals.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from signalbox import dispatch, inventory
from signalbox.doctor._calls import makes_an_instance
from signalbox.doctor._findings import Context, Finding, Severity


def weak_receivers(context: Context) -> Iterator[Finding]:
    """SB111: a weak connection of a receiver nothing else holds, in the
    project's modules."""
    for module in context.scope.modules():
        yield from _weak_in(module)


def _weak_in(module: ModuleType) -> Iterator[Finding]:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return
    # Most modules connect nothing: a text search spares parsing them (this
    # runs in every manage.py command's system checks).
    if "connect(" not in source and "receiver(" not in source:
        return
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    visitor = _Visitor(vars(module))
    visitor.visit(tree)
    for line, receiver, why in visitor.found:
        yield Finding(
            id="SB111",
            severity=Severity.ERROR,
            subject=f"{module.__name__}: {receiver}",
            location=inventory.short_location(f"{module.__file__}:{line}"),
            why=(
                f"It is connected weakly, and {why}: it is collected as soon "
                f"as the code that connected it returns, and never runs."
            ),
            fix=(
                "Connect a module-level function (or pass weak=False to keep "
                "this one alive)."
            ),
        )


class _Visitor(ast.NodeVisitor):
    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.found: list[tuple[int, str, str]] = []
        self.local_defs: list[set[str]] = []  # one set per enclosing function

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self.local_defs:
            self.local_defs[-1].add(node.name)
            for decorator in node.decorator_list:
                if _is_receiver_decorator(decorator):
                    assert isinstance(decorator, ast.Call)
                    if _weak(decorator):
                        self.found.append(
                            (node.lineno, node.name, _LOCAL.format(node.name))
                        )
        self.local_defs.append(set())
        self.generic_visit(node)
        self.local_defs.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        receiver = _connected_receiver(node, self.namespace)
        if receiver is not None and _weak(node):
            why = self._why_unheld(receiver)
            if why is not None:
                self.found.append((node.lineno, ast.unparse(receiver)[:60], why))
        self.generic_visit(node)

    def _why_unheld(self, receiver: ast.expr) -> str | None:
        if isinstance(receiver, ast.Lambda):
            return "it is a lambda"
        # Only a class's call is known to make a new object: a function may
        # return one that lives on (a module-level function, a singleton).
        value = receiver.value if isinstance(receiver, ast.Attribute) else None
        if isinstance(value, ast.Call) and makes_an_instance(value, self.namespace):
            return "it is a method of an object made for this call"
        if isinstance(receiver, ast.Call) and makes_an_instance(
            receiver, self.namespace
        ):
            return "it is an object made for this call"
        if isinstance(receiver, ast.Name) and any(
            receiver.id in names for names in self.local_defs[-1:]
        ):
            return _LOCAL.format(receiver.id)
        return None


_LOCAL = "{} is defined inside the function that connects it"


def _connected_receiver(node: ast.Call, namespace: dict[str, Any]) -> ast.expr | None:
    """The receiver argument of a ``connect`` call, or None for other calls."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name != "connect":
        return None
    for keyword in node.keywords:
        if keyword.arg == "receiver":
            return keyword.value
    # signalbox.connect(signal, receiver) takes the signal first.
    position = 1 if _is_signalbox_connect(func, namespace) else 0
    return node.args[position] if len(node.args) > position else None


def _is_receiver_decorator(node: ast.expr) -> bool:
    """``@receiver(...)``, Django's or signalbox's."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return bool(name == "receiver")


def _is_signalbox_connect(func: ast.expr, namespace: dict[str, Any]) -> bool:
    """Whether ``func`` names :func:`signalbox.connect` (not a signal's
    ``connect`` method)."""
    if isinstance(func, ast.Name):
        found = namespace.get(func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner = namespace.get(func.value.id)
        found = inspect.getattr_static(owner, func.attr, None)
    else:
        return False
    return found is dispatch.connect


def _weak(call: ast.Call) -> bool:
    """Whether the call connects weakly: ``weak`` is not ``False``, and the
    mode is not ``background`` (held strongly, and refused if unfindable).
    ``signal.connect(receiver, sender, weak)`` may pass it third."""
    given = {k.arg: k.value for k in call.keywords if k.arg in ("weak", "run")}
    weak, run = given.get("weak"), given.get("run")
    if weak is None and len(call.args) > 2 and isinstance(call.func, ast.Attribute):
        weak = call.args[2]
    if isinstance(weak, ast.Constant) and weak.value is False:
        return False
    return not (isinstance(run, ast.Constant) and run.value == "background")
