"""What of a send reaches a deferred receiver: ``prepare``, ``exclude``, ``snapshot``.

A background receiver gets its arguments through JSON, so an argument such as
``user_logged_in``'s ``request`` cannot travel. A receiver says what travels
instead: ``prepare`` runs in the sender's thread at send time and returns the
keyword arguments to send (``sender`` included, if it should change),
``exclude`` names arguments to drop, and ``snapshot=False`` sends model
instances as references only. ``on_commit`` receivers take ``prepare`` and
``exclude`` too, so a receiver's arguments are the same in both deferred
modes.

:data:`UNTRAVELLED` is what signalbox knows about signals that carry such
arguments: ``manage.py check`` and ``signalbox list`` read it to flag a
background receiver that would fail at its first send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from asgiref.sync import iscoroutinefunction

from signalbox.exceptions import CodecError, ReceiverError

Prepare = Callable[..., Mapping[str, Any]]

OPTIONS: Final = ("prepare", "exclude", "snapshot")
"""The keyword arguments of ``connect()``/``receiver()`` that :class:`Travel` takes."""

_REQUEST: Final = (
    "an HttpRequest (sessions, files, the connection), which cannot be stored"
)
_HANDLER: Final = "the handler class, which is not a model class or a registered type"
_AT_IMPORT: Final = (
    "sent while models load, before any database can be written; "
    "connect the receiver inline"
)

UNTRAVELLED: Final[Mapping[str, Mapping[str, str]]] = {
    "django.contrib.auth.signals.user_logged_in": {"request": _REQUEST},
    "django.contrib.auth.signals.user_logged_out": {"request": _REQUEST},
    "django.contrib.auth.signals.user_login_failed": {
        "request": _REQUEST,
        "credentials": (
            "what was passed to authenticate(): backend-specific values, and "
            "identifiers a delivery row would keep and the admin would show"
        ),
    },
    "django.core.signals.request_started": {
        "sender": _HANDLER,
        "environ": "the WSGI environ (streams, the server's objects)",
        "scope": "the ASGI scope (the server's objects)",
    },
    "django.core.signals.request_finished": {"sender": _HANDLER},
    "django.core.signals.got_request_exception": {"request": _REQUEST},
    "django.core.signals.setting_changed": {
        "sender": "the settings class",
        "value": "any setting's value: classes, callables, secrets",
    },
    "django.db.backends.signals.connection_created": {
        "sender": "the database backend's class",
        "connection": "a live database connection",
    },
    "django.db.models.signals.class_prepared": {"sender": _AT_IMPORT},
    "django.db.models.signals.pre_init": {
        "args": "the constructor's positional arguments, of any type",
        "kwargs": "the constructor's keyword arguments, of any type",
    },
    "django.db.models.signals.pre_save": {
        "instance": (
            "unsaved when its row is being created (pre_save runs before the "
            "INSERT), and an unsaved instance cannot travel; post_save has it saved"
        ),
    },
    "django.db.models.signals.post_init": {
        "instance": "an instance being built, not saved (or not yet loaded)",
    },
    "django.db.models.signals.pre_migrate": {
        "sender": "an AppConfig",
        "app_config": "an AppConfig",
        "apps": "the migration state's app registry",
        "plan": "Migration objects",
        "stdout": "the command's output stream",
    },
    "django.db.models.signals.post_migrate": {
        "sender": "an AppConfig",
        "app_config": "an AppConfig",
        "apps": "the migration state's app registry",
        "plan": "Migration objects",
        "stdout": "the command's output stream",
    },
    "django.test.signals.template_rendered": {
        "sender": "a Template",
        "template": "a Template",
        "context": "a template Context",
    },
    "django.utils.autoreload.autoreload_started": {"sender": "the reloader"},
    "django.utils.autoreload.file_changed": {
        "sender": "the reloader",
        "file_path": "a pathlib.Path",
    },
    "django.tasks.signals.task_enqueued": {
        "sender": "the task backend's class",
        "task_result": "a TaskResult",
    },
    "django.tasks.signals.task_started": {
        "sender": "the task backend's class",
        "task_result": "a TaskResult",
    },
    "django.tasks.signals.task_finished": {
        "sender": "the task backend's class",
        "task_result": "a TaskResult",
    },
}
"""Signals known to carry arguments that cannot travel: signal -> {argument: why}.

Keyed by the dotted name :func:`signalbox.registry.signal_name` gives, so the
signals need not be imported to be known.
"""


@dataclass(frozen=True, slots=True)
class Travel:
    """What a deferred receiver says about its arguments."""

    prepare: Prepare | None = None
    exclude: frozenset[str] = frozenset()
    snapshot: bool = True

    @classmethod
    def from_options(
        cls, run: str, options: dict[str, Any], allowed: tuple[str, ...]
    ) -> Travel | None:
        """Take this class's options out of ``options``; None if none was given.

        ``allowed`` are the ones mode ``run`` takes. Raises
        :class:`ReceiverError` for an option it has no use for, or a value of
        the wrong kind.
        """
        given = {name: options.pop(name) for name in OPTIONS if name in options}
        if not given:
            return None
        refused = sorted(set(given) - set(allowed))
        if refused:
            raise ReceiverError(
                f"run={run!r} takes no {' or '.join(refused)}: "
                f"{_why_not(run)} (see docs/background.md, 'What travels')."
            )
        return cls(
            prepare=_prepare(given.get("prepare")),
            exclude=_names(given.get("exclude", ())),
            snapshot=_flag(given.get("snapshot", True)),
        )

    def apply(
        self, sender: object, kwargs: dict[str, Any], *, signal: str, receiver: str
    ) -> tuple[object, dict[str, Any]]:
        """The sender and keyword arguments that travel for one send.

        Calls ``prepare(sender=..., **kwargs)`` if given (whatever it raises
        propagates, as an inline receiver's error would), lets a ``sender``
        key it returns replace the sender, then drops the excluded names (an
        excluded ``sender`` travels as None). Raises :class:`CodecError` if
        ``prepare`` returns anything but a dict of keyword arguments.
        """
        if self.prepare is not None:
            kwargs = _prepared(self.prepare, sender, kwargs, signal, receiver)
            sender = kwargs.pop("sender", sender)
        if self.exclude:
            if "sender" in self.exclude:
                sender = None
            kwargs = {k: v for k, v in kwargs.items() if k not in self.exclude}
        return sender, kwargs


def left_in(signal: str, keyed: bool, travel: Travel | None) -> dict[str, str]:
    """The arguments of ``signal`` known not to travel that a receiver of a
    mode that is ``keyed`` (runs in another process) and saying ``travel``
    would try to send, as ``{name: why}``.

    Empty for other modes, and when ``prepare`` is given (it decides what
    travels).
    """
    if not keyed:
        return {}
    if travel is None:
        return untravelled(signal)
    if travel.prepare is not None:
        return {}
    return untravelled(signal, travel.exclude)


def untravelled(signal: str, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """The arguments of ``signal`` known not to travel, but for ``exclude``.

    As ``{name: why}``; empty for a signal signalbox knows nothing about.
    """
    known = UNTRAVELLED.get(signal, {})
    return {name: why for name, why in known.items() if name not in exclude}


def _prepared(
    prepare: Prepare,
    sender: object,
    kwargs: dict[str, Any],
    signal: str,
    receiver: str,
) -> dict[str, Any]:
    prepared = prepare(sender=sender, **kwargs)
    where = f"prepare= of receiver {receiver} (signal {signal})"
    if not isinstance(prepared, Mapping):
        raise CodecError(
            f"{where} returned a {type(prepared).__name__}; it must return a "
            f"dict of the keyword arguments to send.",
            signal=signal,
            receiver=receiver,
        )
    if "signal" in prepared:
        raise CodecError(
            f"{where} returned the argument 'signal', which the receiver is "
            f"given anyway; leave it out.",
            signal=signal,
            receiver=receiver,
            argument="signal",
        )
    return dict(prepared)


def _why_not(run: str) -> str:
    if run == "on_commit":
        return (
            "an on_commit receiver gets the objects that were sent, never "
            "copies of their rows, so there is no snapshot to turn off"
        )
    return (
        "an inline receiver runs during send() with the arguments as sent; "
        "nothing travels, so compute what it needs in the receiver itself"
    )


def _prepare(value: object) -> Prepare | None:
    if value is not None and (not callable(value) or iscoroutinefunction(value)):
        raise ReceiverError(
            f"prepare must be a plain function that takes the signal's keyword "
            f"arguments (sender included) and returns a dict of those to send; "
            f"it runs inside send(), so it cannot be a coroutine function. Got "
            f"a {type(value).__name__}."
        )
    return value


def _names(value: object) -> frozenset[str]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, list | tuple | set | frozenset) or not all(
        isinstance(name, str) and name for name in names
    ):
        raise ReceiverError(
            f"exclude must be a list of argument names, not a {type(value).__name__}."
        )
    if "signal" in names:
        raise ReceiverError(
            "exclude cannot name 'signal': it never travels, the worker passes it."
        )
    return frozenset(names)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ReceiverError(
            f"snapshot must be True or False, not a {type(value).__name__}."
        )
    return value
