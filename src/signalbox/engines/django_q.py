"""Django-Q2: ``signalbox.engines.django_q.DjangoQEngine`` (extra: ``django-q``).

Each delivery becomes one ``async_task("signalbox.engines.django_q.run", id,
alias, using)`` on the broker that ``settings.Q_CLUSTER`` configures (its ORM
broker, Redis, or another). Django-Q wraps every task in its own envelope:
a pickle, signed with ``SECRET_KEY``; signalbox puts only those three plain
values in it. Retries are scheduled in the outbox. Workers are Django-Q's
``manage.py qcluster``; see docs/engines/django_q.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core import checks

# Django-Q2 ships no type information.
from django_q.brokers import Broker, get_broker  # type: ignore[import-untyped]
from django_q.conf import Conf  # type: ignore[import-untyped]
from django_q.tasks import async_task  # type: ignore[import-untyped]
from redis import Redis

from signalbox import outbox
from signalbox.engines import Engine
from signalbox.engines.remote import deliver

TASK = "signalbox.engines.django_q.run"


def run(delivery_id: int, engine: str, using: str = "default") -> None:
    """The Django-Q task: run the delivery through signalbox."""
    deliver(delivery_id, engine=engine, using=using, task_of=DjangoQEngine)


class DjangoQEngine(Engine):
    """Queues one Django-Q task per delivery; ``queue=`` names the cluster."""

    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        usage = "{'timeout': 5} only (the broker is settings.Q_CLUSTER's)"
        self.check_options({"timeout": (int, float)}, usage)
        self.timeout = options.get("timeout", 5)
        self._brokers: dict[str, Broker] = {}
        # The list a plain `manage.py qcluster` consumes: Q_CLUSTER's name.
        self.default_queue = str(Conf.CLUSTER_NAME)

    def broker(self, queue: str) -> Broker:
        """The broker for ``queue``: Django-Q's own cluster for ``"default"``,
        else the cluster named ``queue`` (``Q_CLUSTER_NAME=queue qcluster``)."""
        if queue not in self._brokers:
            broker = get_broker(self.broker_queue(queue))
            if isinstance(broker.connection, Redis):
                # Django-Q leaves Redis timeouts unset: a hand-over must fail fast.
                kwargs = broker.connection.connection_pool.connection_kwargs
                kwargs.setdefault("socket_timeout", self.timeout)
                kwargs.setdefault("socket_connect_timeout", self.timeout)
            self._brokers[queue] = broker
        return self._brokers[queue]

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Queue each delivery; raise if the broker refuses one."""
        for each in handovers:
            broker = self.broker(each.queue)
            async_task(TASK, each.id, self.alias, each.using, broker=broker)

    def worker_hint(self, queues: Sequence[str]) -> str:
        """``manage.py qcluster``, once per cluster the queues name."""
        commands = [
            "manage.py qcluster"
            if name == self.default_queue
            else f"Q_CLUSTER_NAME={name} manage.py qcluster"
            for name in sorted({self.broker_queue(q) for q in queues})
        ]
        return " and ".join(f"`{command}`" for command in commands)

    def check(self) -> list[checks.CheckMessage]:
        """Say what Django-Q's envelope is, and when ``sync`` bypasses workers."""
        messages: list[checks.CheckMessage] = [
            checks.Info(
                "Django-Q pickles each task package and signs it with SECRET_KEY; "
                "signalbox puts only a delivery id and two aliases in it.",
                hint="Keep SECRET_KEY secret: it is what stops a forged package "
                "from being unpickled by qcluster.",
                id="signalbox.I012",
            )
        ]
        if Conf.SYNC:
            why = "Q_CLUSTER['sync'] is set: deliveries run on the hand-over thread"
            messages.append(checks.Warning(why, id="signalbox.W012"))
        return messages

    def close(self) -> None:
        for broker in self._brokers.values():
            if isinstance(broker.connection, Redis):
                broker.connection.close()
        self._brokers.clear()
