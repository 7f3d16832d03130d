"""Celery as an engine: ``signalbox.engines.celery.CeleryEngine``; see
docs/engines/celery.md. It registers one task, ``signalbox.deliver.<alias>``, on
the project's app; each message is JSON and carries the delivery id (and the
database alias when it is not ``"default"``), nothing else."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar

from celery import Celery, signals  # type: ignore[import-untyped]
from django.core import checks

from signalbox import outbox
from signalbox.engines import Engine, Kept, OptionKinds, _clients
from signalbox.engines.remote import deliver, write_acks

_OPTIONS: OptionKinds = {
    "app": str,
    "queue_prefix": str,
    "publish_timeout": (int, float),
    "acks_late": bool,
}
_USAGE = (
    "{'app': 'proj.celery.app'} and optionally queue_prefix (str), "
    "publish_timeout (seconds) and acks_late (bool)"
)


# A prefork child leaves with os._exit(), after this signal: no atexit hook runs.
signals.worker_process_shutdown.connect(lambda **kwargs: write_acks(), weak=False)


class CeleryEngine(Engine):
    """One JSON message per delivery; refuses an app that accepts anything but
    JSON. ``priority=`` is clamped to 0 (first) … 9, inverted for AMQP."""

    supports_priority: ClassVar[bool] = True
    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.check_options(_OPTIONS, _USAGE, required=["app"])
        self.app = app = self.import_option("app", Celery, "a Celery app")
        _clients.refuse_unless_json(alias, app)

        def body(delivery_id: int, using: str = "default") -> None:
            deliver(delivery_id, engine=alias, using=using, defer_ack=True)

        # What `celery -A proj worker` consumes when no -Q names queues.
        self.default_queue = str(app.conf.task_default_queue)
        self.queue_prefix = self.options.get("queue_prefix", "")
        name = f"signalbox.deliver.{alias}"  # kept if the engine is built again
        self.task = app.tasks[name] if name in app.tasks else app.task(name=name)(body)
        self.task.serializer, self.task.ignore_result = "json", True
        self.task.acks_late = self.options.get("acks_late", True)
        self._amqp = str(app.conf.broker_url or "amqp").startswith(("amqp", "py"))
        wait = self.options.get("publish_timeout", 2.0)
        connect = functools.partial(_clients.celery_producer, app, wait, self._amqp)
        self._producer = Kept(connect, lambda p: p.connection.release())

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Without Celery's retries: a broker that is down or does not confirm
        raises within about ``publish_timeout``, and the rows wait for the relay."""
        if self.app.conf.task_always_eager:  # runs them here, as Celery does
            for each in handovers:
                self.task.apply_async(_args(each))
            return
        with self._producer.use() as producer:
            batch = getattr(producer, "batch", None)  # kombu 5.7+: one round trip
            with batch() if batch and len(handovers) > 1 else nullcontext():
                for each in handovers:
                    queue = self.broker_queue(each.queue)
                    message = (_args(each), queue, each.priority)
                    _clients.send_celery(self.task, producer, *message, self._amqp)

    def worker_hint(self, queues: Sequence[str]) -> str:
        """``celery -A <app> worker``, with ``-Q`` unless only the default queue."""
        module, _, attribute = self.options["app"].rpartition(".")
        command = f"celery -A {module}:{attribute} worker"
        if names := _clients.named_queues(self, queues):
            command += f" -Q {','.join(names)}"
        return f"`{command}`"

    def check(self) -> list[checks.CheckMessage]:
        """Warn when the app runs tasks eagerly (in the hand-over thread)."""
        if not self.app.conf.task_always_eager:
            return []
        eager = "app has task_always_eager set: deliveries run in the sending process"
        message = f"The Celery engine {self.alias!r}'s {eager}."
        return [checks.Warning(message, id="signalbox.W101")]


def _args(each: outbox.Handover) -> list[Any]:
    return [each.id] if each.using == "default" else [each.id, each.using]
