"""Dramatiq 2.x: ``signalbox.engines.dramatiq.DramatiqEngine`` (extra: ``dramatiq``).

One actor, ``signalbox_deliver`` (``max_retries=0``: the outbox retries), on
the broker of ``OPTIONS["broker"]``: a ``redis://`` or ``amqp://`` URL, or the
dotted path of the project's broker. Workers: docs/engines/dramatiq.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dramatiq
from django.core import checks
from dramatiq.encoder import JSONEncoder

from signalbox import engines, outbox
from signalbox.engines import Engine, OptionKinds, _clients
from signalbox.engines.remote import deliver
from signalbox.exceptions import ConfigurationError

ACTOR = "signalbox_deliver"
_OPTIONS: OptionKinds = {
    "broker": str,
    "queue_prefix": str,
    "queues": (list, tuple),
    "time_limit": (int, float),
    "timeout": (int, float),
}
_USAGE = (
    "{'broker': 'redis://…' | 'amqp://…' | 'proj.dramatiq.broker', 'queues': "
    "['default'], 'queue_prefix': '', 'time_limit': ms, 'timeout': 5} (broker required)"
)


def _run(delivery_id: int, engine: str, using: str = "default") -> None:
    deliver(delivery_id, engine=engine, using=using, task_of=DramatiqEngine)


class DramatiqEngine(Engine):
    """Sends one message per delivery to the actor ``signalbox_deliver``."""

    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.check_options(_OPTIONS, _USAGE, required=["broker"])
        self.broker = _clients.dramatiq_broker(
            alias, options["broker"], options.get("timeout", 5)
        )
        self.queue_prefix = str(options.get("queue_prefix", ""))
        self.default_queue = "default"  # an actor's queue when it names none
        limit = {"time_limit": options["time_limit"]} if "time_limit" in options else {}
        self.actor = dramatiq.actor(
            actor_name=ACTOR,
            queue_name=self.default_queue,
            broker=self.broker,
            max_retries=0,
            **limit,
        )(_run)
        # A worker started without --queues consumes every declared queue.
        for name in options.get("queues", ["default"]):
            self.broker.declare_queue(self.broker_queue(name))

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Enqueue each delivery's message; raise if the broker refuses one."""
        for each in handovers:
            message = self.actor.message(each.id, self.alias, each.using)
            queue = self.broker_queue(each.queue)
            self.broker.enqueue(message.copy(queue_name=queue))

    def worker_hint(self, queues: Sequence[str]) -> str:
        """A ``dramatiq`` worker, which consumes every declared queue unless
        told ``--queues``."""
        names = " ".join(sorted({self.broker_queue(q) for q in queues}))
        return f"`dramatiq <your broker module>` (or with --queues {names})"

    def check(self) -> list[checks.CheckMessage]:
        """An error unless Dramatiq's encoder is JSON (the default)."""
        encoder = dramatiq.get_encoder()
        if isinstance(encoder, JSONEncoder):
            return []
        why = f"Dramatiq's encoder is {type(encoder).__name__}, not JSONEncoder"
        return [checks.Error(why, hint="Remove set_encoder().", id="signalbox.E011")]

    def close(self) -> None:
        self.broker.close()


def broker(alias: str = "default") -> dramatiq.Broker:
    """Engine ``alias``'s broker, made Dramatiq's global one: for workers, once
    Django is set up (``dramatiq proj.worker:broker``)."""
    engine = engines.get(alias)
    if not isinstance(engine, DramatiqEngine):
        raise ConfigurationError(f"Engine {alias!r} is not a DramatiqEngine.")
    dramatiq.set_broker(engine.broker)
    return engine.broker
