"""Engines: who runs background receivers once their rows are committed.

Configured by alias, the way Django configures ``CACHES``::

    SIGNALBOX = {"ENGINES": {
        "default": {"BACKEND": "signalbox.engines.celery.CeleryEngine",
                    "OPTIONS": {"app": "proj.celery.app"}},
        "local": {"BACKEND": "signalbox.engines.threads.ThreadEngine"},
    }}

With nothing configured, ``"default"`` is the embedded worker (``manage.py
signalbox worker``), which claims its rows from the outbox itself. Any other
engine is *handed* each delivery after the sender's transaction commits: its
message carries only the delivery id (with the engine's and the database's
aliases), and its task calls
:func:`signalbox.engines.remote.deliver`, which claims the row under a lease and runs
it through the same code as the embedded worker. The outbox row stays the
source of truth: a hand-over that fails (the broker is down) leaves the row
for ``manage.py signalbox relay``, and retries and delays are scheduled in
the outbox, never by the broker.

A receiver picks an engine with ``engine="alias"``. This module holds the
:class:`Engine` base class and loads the configured engines; it imports no
engine's client library until that engine is configured.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, Final, Generic, TypeVar

from django.core import checks
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from signalbox import _forks, conf, outbox
from signalbox.exceptions import ConfigurationError

DEFAULT_QUEUE: Final = "default"
"""The queue of a receiver without ``queue=``: the embedded worker's queue
``"default"``, and every other engine's own default queue (see
:meth:`Engine.broker_queue`)."""


OptionKinds = Mapping[str, type | tuple[type, ...]]
"""The OPTIONS an engine takes, each with its type or a tuple of types."""


class Engine:
    """Hands committed deliveries to a job system. Subclass it for a new one.

    A subclass validates ``options`` in ``__init__`` (raising
    :class:`~signalbox.ConfigurationError`, an ``ImproperlyConfigured``, with
    what is wrong and what to write instead), sends one message per delivery
    in :meth:`publish`, and says in :meth:`check` what Django's system checks
    should report. Its task on the other side calls
    :func:`signalbox.engines.remote.deliver` with the id, the engine's alias
    and the database alias, all three carried by the message, and nothing
    else.
    """

    embedded: ClassVar[bool] = False
    """True for the embedded worker, which claims rows itself: nothing is
    handed to it."""
    supports_delay: ClassVar[bool] = True
    """Delays and retries are scheduled in the outbox and handed over once
    due, so every engine supports them."""
    supports_priority: ClassVar[bool] = False
    """Whether ``priority=`` reaches the engine (the outbox orders by it
    either way when it hands rows over)."""
    supports_queues: ClassVar[bool] = False
    """Whether ``queue=`` picks where the engine runs a delivery."""

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        self.alias = alias
        self.options = dict(options)
        self.default_queue = DEFAULT_QUEUE
        """The engine's own name for the queue its workers consume when
        started without naming one: where a receiver without ``queue=``
        (or with ``queue="default"``) goes. A subclass sets it to its
        library's default."""
        self.queue_prefix = ""
        """Put before the queues that receivers name (never before
        :attr:`default_queue`, which is the engine's own name)."""

    def broker_queue(self, queue: str) -> str:
        """The engine's own name for signalbox queue ``queue``: its default
        queue for ``"default"``, else ``queue_prefix + queue``."""
        if queue == DEFAULT_QUEUE:
            return self.default_queue
        return self.queue_prefix + queue

    def worker_hint(self, queues: Sequence[str]) -> str:
        """How to start what runs this engine's deliveries on signalbox
        ``queues``, for a person reading a log line or ``signalbox status``."""
        names = ", ".join(sorted({self.broker_queue(q) for q in queues}))
        return f"a worker of engine {self.alias!r} consuming {names}"

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Send one message per delivery; raise if the engine did not take them.

        Must not block for long (a few seconds at most): it runs on the
        hand-over thread and in the relay, never in a request.
        """
        raise NotImplementedError

    def check(self) -> list[checks.CheckMessage]:
        """What ``manage.py check`` should say about this engine."""
        return []

    def close(self) -> None:
        """Let go of connections and threads (tests, shutdown); the base class
        closes the engine's :class:`Kept` clients."""
        for value in vars(self).values():
            if isinstance(value, Kept):
                value.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r}>"

    # Helpers for subclasses.

    def check_options(
        self,
        kinds: OptionKinds,
        usage: str,
        *,
        required: Sequence[str] = (),
    ) -> None:
        """Refuse, in one format for every engine, an option not in ``kinds``,
        one not of its type there (a type or a tuple of them; a bool is a
        number only where ``bool`` is named), and a missing ``required`` one.
        The error shows ``usage`` (what to write) and what was wrong."""
        problems = []
        if unknown := [repr(key) for key in self.options if key not in kinds]:
            problems.append(f"unknown {', '.join(unknown)}")
        problems += [
            f"OPTIONS[{key!r}] must be {_kind_names(kinds[key])}, "
            f"not {type(value).__name__}"
            for key, value in self.options.items()
            if key in kinds and not _is_kind(value, kinds[key])
        ]
        problems += [
            f"OPTIONS[{key!r}] is required"
            for key in required
            if key not in self.options
        ]
        if problems:
            takes = f"OPTIONS {usage}" if kinds else f"no OPTIONS {usage}"
            raise ConfigurationError(
                f"The {self._label} engine {self.alias!r} takes {takes}, not "
                f"{self.options!r}: {'; '.join(problems)}."
            )

    def option_error(self, key: str, expected: str) -> ConfigurationError:
        """The error for ``OPTIONS[key]``, of the right type but a wrong value:
        ``expected`` says what it must be."""
        return ConfigurationError(
            f"The {self._label} engine {self.alias!r}: OPTIONS[{key!r}] is "
            f"{self.options[key]!r}; {expected}."
        )

    def import_option(self, key: str, kind: type, what: str) -> Any:
        """The object that ``OPTIONS[key]``, a dotted path, names; it must be a
        ``kind`` (described as ``what``). A path from settings, never a row."""
        path = self.options[key]
        try:
            found = import_string(path)
        except ImportError as error:
            raise ConfigurationError(
                f"The {self._label} engine {self.alias!r}: OPTIONS[{key!r}] is "
                f"{path!r}, which cannot be imported ({error})."
            ) from error
        if not isinstance(found, kind):
            raise ConfigurationError(
                f"The {self._label} engine {self.alias!r}: OPTIONS[{key!r}] is "
                f"{path!r}, which is not {what}."
            )
        return found

    @property
    def _label(self) -> str:
        return type(self).__name__.removesuffix("Engine")


def _is_kind(value: object, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # True is an int to Python, not a count to a person
    return isinstance(value, kinds)


def _kind_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(each.__name__ for each in kinds)


_Client = TypeVar("_Client")


class Kept(Generic[_Client]):
    """A broker client an engine keeps between hand-overs.

    Made on first use in each process (a forked child never writes to its
    parent's socket), used by one thread at a time, and dropped after an
    error, so that the next hand-over connects afresh.
    """

    def __init__(
        self, make: Callable[[], _Client], close: Callable[[_Client], object]
    ) -> None:
        self._make, self._close = make, close
        self._lock = threading.Lock()
        self._client: _Client | None = None
        _forks.renew_in_children(self, Kept._forget_parent)

    def _forget_parent(self) -> None:
        # Never the parent's socket; and the hand-over thread may have been
        # publishing through it, holding the lock, at the fork.
        self._lock, self._client = threading.Lock(), None

    @contextmanager
    def use(self) -> Iterator[_Client]:
        """The client, made if need be; dropped if the block raises."""
        with self._lock:
            if self._client is None:
                self._client = self._make()
            try:
                yield self._client
            except BaseException:
                self._drop()
                raise

    def close(self) -> None:
        """Let go of the client, if there is one."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):  # the next use connects afresh either way
                self._close(client)


_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def _forget_parents_lock() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have been building an engine


os.register_at_fork(after_in_child=_forget_parents_lock)


def get(alias: str) -> Engine:
    """The engine configured as ``alias``, built on first use and kept.

    Raises :class:`~signalbox.ConfigurationError` for an unknown alias, a
    backend that cannot be imported or is not an :class:`Engine`, or options
    the engine refuses.
    """
    engine = _engines.get(alias)
    if engine is not None:
        return engine
    with _lock:
        if alias not in _engines:
            _engines[alias] = _build(alias)
        return _engines[alias]


def _build(alias: str) -> Engine:
    configured = conf.get().engines
    if alias not in configured:
        raise ConfigurationError(
            f"No engine {alias!r} in settings.SIGNALBOX['ENGINES']; "
            f"the aliases there are {sorted(configured)}."
        )
    backend = configured[alias].backend
    try:
        engine_class = import_string(backend)  # a path from settings, never a row
    except ImportError as error:
        raise ConfigurationError(
            f"settings.SIGNALBOX['ENGINES'][{alias!r}]['BACKEND'] is {backend!r}, "
            f"which cannot be imported ({error}). Is its extra installed, "
            f"e.g. pip install signalbox[celery]?"
        ) from error
    if not (isinstance(engine_class, type) and issubclass(engine_class, Engine)):
        raise ConfigurationError(
            f"settings.SIGNALBOX['ENGINES'][{alias!r}]['BACKEND'] is {backend!r}, "
            f"which is not a subclass of signalbox.engines.Engine."
        )
    return engine_class(alias, configured[alias].options)


def aliases(*, embedded: bool) -> list[str]:
    """The configured aliases whose engine is (or is not) the embedded worker."""
    return [alias for alias in conf.get().engines if get(alias).embedded == embedded]


def load_all() -> dict[str, Engine]:
    """Build every configured engine now: a misconfiguration fails at startup."""
    return {alias: get(alias) for alias in conf.get().engines}


def reset() -> None:
    """Close and forget the engines built so far (settings changed, tests)."""
    with _lock:
        built = list(_engines.values())
        _engines.clear()
    for engine in built:
        engine.close()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "SIGNALBOX":
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="signalbox.engines")


def engine_queue(alias: str, queue: str) -> tuple[str, str]:
    """How to name signalbox ``queue`` of engine ``alias`` to a person (with the
    engine's own name for it when that differs), and how to start a worker
    that consumes it."""
    try:
        engine = get(alias)
    except ConfigurationError:  # no longer configured: say what is known
        return f"engine {alias!r}, queue {queue!r}", "a worker for it"
    own = engine.broker_queue(queue)
    named = f"{queue!r}" if own == queue else f"{queue!r} ({own!r} to the engine)"
    return f"engine {alias!r}, queue {named}", engine.worker_hint([queue])


def worker_hint(alias: str, queues: Sequence[str]) -> str:
    """How to start what runs engine ``alias``'s deliveries on signalbox
    ``queues`` (the engine's :meth:`~signalbox.engines.Engine.worker_hint`),
    for a worker's first lines."""
    try:
        return get(alias).worker_hint(queues)
    except ConfigurationError:  # no longer configured
        return f"a worker of engine {alias!r}"


__all__ = [
    "DEFAULT_QUEUE",
    "Engine",
    "Kept",
    "OptionKinds",
    "aliases",
    "engine_queue",
    "get",
    "load_all",
    "reset",
    "worker_hint",
]
