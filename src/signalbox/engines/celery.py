"""Celery as an engine: ``signalbox.engines.celery.CeleryEngine``.

``OPTIONS``: ``app``, the dotted path to the project's Celery app (required);
``queue_prefix`` put before each signalbox queue's name to make the Celery
queue's (``""``); ``publish_timeout`` in seconds (2); ``acks_late`` (True).
The engine registers one task, ``signalbox.deliver.<alias>``, on that app. Its
message is JSON and carries only the delivery id (and the database alias when
it is not ``"default"``); the broker never schedules anything. See
docs/engines/celery.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from celery import Celery  # type: ignore[import-untyped]
from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.utils.module_loading import import_string

from signalbox import outbox
from signalbox.engines import Engine
from signalbox.engines.remote import deliver
from signalbox.exceptions import ConfigurationError

_OPTIONS: dict[str, Any] = {
    "app": str,
    "queue_prefix": str,
    "publish_timeout": (int, float),
    "acks_late": bool,
}
_JSON = {"json", "application/json"}


class CeleryEngine(Engine):
    """Publishes each delivery as one JSON message to a task on the project's app.

    Refuses to start when the app accepts anything but JSON (pickle above all).
    ``priority=`` is clamped to Celery's 0 (first) … 9 and inverted for AMQP,
    whose queues need ``x-max-priority`` to honour it.
    """

    supports_priority: ClassVar[bool] = True
    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.app, self.prefix, self.timeout, acks_late = _validated(alias, options)
        accepted = set(self.app.conf.accept_content) | {self.app.conf.task_serializer}
        if accepted - _JSON:
            raise ConfigurationError(
                f"The Celery engine {alias!r} runs only with JSON, but its app "
                f"accepts {sorted(accepted - _JSON)}: set accept_content=['json'] "
                f"and task_serializer='json' (pickle runs code from the broker)."
            )

        def body(delivery_id: int, using: str = DEFAULT_DB_ALIAS) -> None:
            deliver(delivery_id, engine=alias, using=using)

        name = f"signalbox.deliver.{alias}"  # kept if built again: same body
        tasks = self.app.tasks
        self.task = tasks[name] if name in tasks else self.app.task(name=name)(body)
        self.task.serializer, self.task.acks_late = "json", acks_late
        self.task.ignore_result = True
        self._amqp = str(self.app.conf.broker_url or "amqp").startswith(("amqp", "py"))
        self._lock = threading.Lock()
        self._connection: Any = None
        self._producer: Any = None
        self._pid = os.getpid()

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """One message per delivery, without Celery's retries: a broker that is
        down or does not confirm raises within about ``publish_timeout``, and
        the rows wait for the relay."""
        with self._lock:
            try:
                producer = self._producer_here()
                for each in handovers:
                    self.task.apply_async(
                        [each.id] if each.using == "default" else [each.id, each.using],
                        queue=self.prefix + each.queue,
                        priority=self._priority(each.priority),
                        producer=producer,
                        retry=False,
                    )
            except Exception:
                self._close()
                raise

    def _producer_here(self) -> Any:
        if self._pid != os.getpid():  # a forked child must not use the parent's socket
            self._connection = self._producer = None
            self._pid = os.getpid()
        if self._producer is None:
            wait = self.timeout
            bounded = {"max_retries": 0, "socket_timeout": wait, "read_timeout": wait}
            if self._amqp:  # else RabbitMQ may drop a message and raise nothing
                bounded |= {"write_timeout": wait, "confirm_publish": True}
            self._connection = self.app.connection_for_write(
                connect_timeout=wait, transport_options=bounded
            )
            self._producer = self._connection.Producer()
        return self._producer

    def _priority(self, priority: int) -> int:
        clamped = min(max(priority, 0), 9)
        return 9 - clamped if self._amqp else clamped

    def check(self) -> list[checks.CheckMessage]:
        """Warn when the app runs tasks eagerly (in the hand-over thread)."""
        if not self.app.conf.task_always_eager:
            return []
        return [
            checks.Warning(
                f"The Celery engine {self.alias!r}'s app has task_always_eager set: "
                f"deliveries run in the sending process, not in a worker.",
                id="signalbox.W101",
            )
        ]

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.release()  # also closes the producer's channel
        self._connection = self._producer = None

    def close(self) -> None:
        """Let go of the engine's broker connection."""
        with self._lock:
            self._close()


def _validated(alias: str, options: Mapping[str, Any]) -> tuple[Any, str, float, bool]:
    wrong = [k for k, v in options.items() if not isinstance(v, _OPTIONS.get(k, ()))]
    if wrong or not isinstance(options.get("app"), str):
        raise ConfigurationError(
            f"The Celery engine {alias!r} takes OPTIONS {{'app': 'proj.celery.app'}} "
            f"and optionally queue_prefix (str), publish_timeout (float) and "
            f"acks_late (bool), not {dict(options)!r}."
        )
    try:
        app = import_string(options["app"])  # a path from settings, never a row
    except ImportError as error:
        raise ConfigurationError(
            f"The Celery engine {alias!r}: OPTIONS['app'] is {options['app']!r}, "
            f"which cannot be imported ({error})."
        ) from error
    if not isinstance(app, Celery):
        raise ConfigurationError(
            f"The Celery engine {alias!r}: OPTIONS['app'] is {options['app']!r}, "
            f"which is not a Celery app."
        )
    timeout = options.get("publish_timeout", 2.0)
    return app, options.get("queue_prefix", ""), timeout, options.get("acks_late", True)
