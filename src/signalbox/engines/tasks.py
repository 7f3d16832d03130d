"""Django's Tasks framework: ``signalbox.engines.tasks.TasksEngine``.

``django.tasks`` on Django 6.x, the ``django-tasks`` backport on 5.2 (extra:
``tasks``). Each delivery is one enqueued run of the task :data:`run`, with
the delivery id, the engine's alias and the database alias as its JSON
arguments, on the ``TASKS`` backend named by ``OPTIONS["backend"]``, so any
Tasks backend (django-tasks-db's, or another) runs signalbox's receivers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core import checks

from signalbox import outbox
from signalbox.engines import Engine
from signalbox.engines.remote import deliver
from signalbox.exceptions import ConfigurationError

try:
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, task, task_backends
    from django.tasks.exceptions import InvalidTaskBackend
except ImportError:  # Django 5.2: the backport, whose types differ in name only
    from django_tasks import (  # type: ignore[assignment, no-redef]
        DEFAULT_TASK_QUEUE_NAME,
        task,
        task_backends,
    )
    from django_tasks.exceptions import (  # type: ignore[assignment, unused-ignore]
        InvalidTaskBackendError as InvalidTaskBackend,
    )

_PRIORITY = 100  # the Tasks framework's bounds are -100 and 100


@task()
def run(delivery_id: int, engine: str, using: str = "default") -> None:
    """The task: run the delivery through signalbox, return nothing."""
    deliver(delivery_id, engine=engine, using=using, task_of=TasksEngine)


class TasksEngine(Engine):
    """Enqueues one task result per delivery on a ``TASKS`` backend."""

    supports_queues: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        usage = "{'backend': 'default'} (an alias in settings.TASKS) only"
        self.check_options({"backend": str}, usage)
        self.backend_alias = options.get("backend", "default")
        self.default_queue = DEFAULT_TASK_QUEUE_NAME  # the workers' default too
        try:
            self.backend = task_backends[self.backend_alias]
        except InvalidTaskBackend as error:
            raise ConfigurationError(
                f"The Tasks engine {alias!r} names backend {self.backend_alias!r}, "
                f"which settings.TASKS does not configure ({error})."
            ) from error

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Enqueue each delivery; raise if the backend refuses one."""
        for each in handovers:
            priority = max(-_PRIORITY, min(_PRIORITY, each.priority))
            bound = run.using(
                backend=self.backend_alias,
                queue_name=self.broker_queue(each.queue),
                priority=priority if self.backend.supports_priority else None,
            )
            bound.enqueue(each.id, self.alias, each.using)

    def worker_hint(self, queues: Sequence[str]) -> str:
        """The backend's worker, on the queues named."""
        names = ", ".join(sorted({self.broker_queue(q) for q in queues}))
        return (
            f"a worker of Tasks backend {self.backend_alias!r} on queue {names} "
            f"(django-tasks-db: `manage.py db_worker`)"
        )

    def check(self) -> list[checks.CheckMessage]:
        """Say so when the backend drops ``priority=`` or runs tasks inline."""
        messages: list[checks.CheckMessage] = []
        name = type(self.backend).__name__
        if not self.backend.supports_priority:
            why = f"Tasks backend {self.backend_alias!r} ({name}) has no priorities"
            messages.append(checks.Info(why, id="signalbox.I010"))
        if name == "ImmediateBackend":
            why = f"Tasks backend {self.backend_alias!r} runs tasks at once, on"
            why += " the sending process's hand-over thread, not in a worker"
            messages.append(checks.Info(why, id="signalbox.I011"))
        return messages
