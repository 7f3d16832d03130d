"""Reading a receiver's code for blocking I/O, with :mod:`ast`.

A call is resolved through the calling function's module globals, one
attribute at a time with :func:`inspect.getattr_static` (which runs no
code): ``requests.get`` is the function ``requests.api.get``, ``sleep`` after
``from time import sleep`` is ``time.sleep``. A name assigned from a class
in the same function (``message = EmailMessage(...)``) stands for an
instance of it, so ``message.send()`` is ``EmailMessage.send``. A call of a
function of the project is followed into that function's code, up to
:data:`FOLLOW_DEPTH` calls deep. Nothing is imported and nothing is called:
what was never imported cannot be resolved, and is not reported.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from signalbox.doctor._scope import Scope

FOLLOW_DEPTH = 2
"""How many calls deep into the project's own functions the reading goes."""


@dataclass(frozen=True, slots=True)
class _Blocking:
    module: str
    """A module, matched with its submodules (``requests`` holds ``requests.api``)."""
    names: frozenset[str] | None
    """The blocking names in it; None: every callable in it but ``Async…`` ones."""
    does: str


BLOCKING: tuple[_Blocking, ...] = (
    _Blocking(
        "django.core.mail",
        frozenset({"send_mail", "send_mass_mail", "mail_admins", "mail_managers"}),
        "sends e-mail",
    ),
    _Blocking("django.core.mail.message", frozenset({"send"}), "sends e-mail"),
    _Blocking("smtplib", None, "talks to an SMTP server"),
    _Blocking("requests", None, "makes an HTTP request"),
    _Blocking("httpx", None, "makes an HTTP request"),
    _Blocking("urllib3", None, "makes an HTTP request"),
    _Blocking("urllib.request", None, "makes an HTTP request"),
    _Blocking(
        "socket",
        frozenset({"create_connection", "socket", "getaddrinfo", "gethostbyname"}),
        "opens a network connection",
    ),
    _Blocking("subprocess", None, "runs another program and waits for it"),
    _Blocking("time", frozenset({"sleep"}), "sleeps"),
    _Blocking("boto3", None, "calls AWS"),
    _Blocking("botocore", None, "calls AWS"),
    _Blocking("weasyprint", None, "renders a PDF"),
    _Blocking("reportlab", None, "renders a PDF"),
    _Blocking("PIL", None, "processes an image"),
)
"""What counts as blocking I/O: the calls a request should not wait for."""


@dataclass(frozen=True, slots=True)
class BlockingCall:
    """A blocking call a function makes, itself or through the project's
    functions it calls (``through``, outermost first)."""

    name: str
    """The dotted name of what is called (``django.core.mail.send_mail``)."""
    does: str
    line: int
    """The line, in the inspected function's file, of its call that leads there."""
    through: tuple[str, ...] = ()


class _Instance:
    """An object known only by its class (``EmailMessage(...)``)."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls


_UNKNOWN = object()


def blocking_calls(function: Callable[..., Any], scope: Scope) -> list[BlockingCall]:
    """Every blocking call ``function`` makes, itself or through the project's
    functions (of ``scope``) it calls, first by line; an empty list when its
    source cannot be read."""
    return list(_calls_of(inspect.unwrap(function), scope, FOLLOW_DEPTH, set()))


def _calls_of(
    function: Any, scope: Scope, depth: int, seen: set[object]
) -> Iterator[BlockingCall]:
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code is None or code in seen:
        return
    seen.add(code)
    tree = _parse(function)
    if tree is None:
        return
    namespace: dict[str, Any] = getattr(function, "__globals__", {})
    instances = _instances(tree, namespace)
    for call in sorted(_calls(tree), key=lambda node: node.lineno):
        line = code.co_firstlineno + call.lineno - 1
        target = _resolve(call.func, namespace, instances)
        blocking = _blocking(target)
        if blocking is not None:
            yield BlockingCall(_dotted(target), blocking.does, line)
        elif depth > 0 and _followable(target, scope):
            for inner in _calls_of(target, scope, depth - 1, seen):
                through = (_dotted(target), *inner.through)
                yield BlockingCall(inner.name, inner.does, line, through)


def _parse(function: Any) -> ast.AST | None:
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):  # no source, or a lambda's line
        return None
    first = tree.body[0] if tree.body else None
    if not isinstance(first, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    # Decorators run at import, not in the receiver.
    first.decorator_list = []
    return first


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _instances(tree: ast.AST, namespace: dict[str, Any]) -> dict[str, _Instance]:
    """Local names assigned an instance of a known class in the function."""
    found: dict[str, _Instance] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            made = _resolve(node.value, namespace, found)
            if type(made) is _Instance:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = made
    return found


def makes_an_instance(call: ast.Call, namespace: dict[str, Any]) -> bool:
    """Whether ``call`` calls a class (a new object), resolved through
    ``namespace`` as calls are; False when that cannot be known."""
    return type(_resolve(call, namespace, {})) is _Instance


def _resolve(
    node: ast.expr, namespace: dict[str, Any], local: dict[str, _Instance]
) -> Any:
    if isinstance(node, ast.Name):
        if node.id in local:
            return local[node.id]
        if node.id in namespace:
            return namespace[node.id]
        return getattr(builtins, node.id, _UNKNOWN)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace, local)
        if owner is _UNKNOWN:
            return _UNKNOWN
        if type(owner) is _Instance:
            owner = owner.cls
        try:
            found = inspect.getattr_static(owner, node.attr)
        except AttributeError:
            return _UNKNOWN
        if type(found) in (staticmethod, classmethod):
            return found.__func__
        return found
    if isinstance(node, ast.Call):
        made = _resolve(node.func, namespace, local)
        return _Instance(made) if issubclass(type(made), type) else _UNKNOWN
    return _UNKNOWN


_READABLE = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    type,
)
"""What a name may stand for to be read further: functions and classes.
Anything else (a lazy object above all) is left alone, unasked: asking it
for an attribute, even through ``isinstance()``, may build it."""


def _blocking(target: Any) -> _Blocking | None:
    module, name = _module_and_name(target)
    if not module:
        return None
    for blocking in BLOCKING:
        if module != blocking.module and not module.startswith(f"{blocking.module}."):
            continue
        if blocking.names is None and not name.startswith("Async"):
            return blocking
        if blocking.names is not None and name in blocking.names:
            return blocking
    return None


def _module_and_name(target: Any) -> tuple[str, str]:
    if not issubclass(type(target), _READABLE):
        return "", ""
    module = getattr(target, "__module__", None)
    name = getattr(target, "__name__", None)
    if isinstance(module, str) and isinstance(name, str):
        return module, name
    return "", ""


def _dotted(target: Any) -> str:
    """``module.qualname`` of a function or class (what :func:`_blocking`
    and :func:`_followable` accepted)."""
    module, name = _module_and_name(target)
    qualname = getattr(target, "__qualname__", None) or name
    return f"{module}.{qualname}" if module else name


def _followable(target: Any, scope: Scope) -> bool:
    """A function (or method) of the project: its code is read in turn."""
    return type(target) is types.FunctionType and scope.follows(target.__module__)
