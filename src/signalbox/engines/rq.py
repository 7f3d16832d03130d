"""RQ 2.x on Redis: ``signalbox.engines.rq.RQEngine`` (``pip install signalbox[rq]``).

Each delivery becomes one RQ job, serialized as JSON, calling :func:`run`
with the delivery id, the engine's alias and the database alias. RQ retries
nothing (``retry=None``) and keeps no result: the outbox row holds both.
Start workers with ``rq worker --serializer rq.serializers.JSONSerializer``
in a process where Django is set up; see docs/engines/rq.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.core import checks
from rq import Queue
from rq.serializers import JSONSerializer

from signalbox import outbox
from signalbox.engines import Engine, OptionKinds, _clients
from signalbox.engines.remote import deliver

_OPTIONS: OptionKinds = {
    "url": str,
    "queue_prefix": str,
    "job_timeout": int,
    "socket_timeout": (int, float),
}
_USAGE = (
    "{'url': 'redis://host:6379/0', 'queue_prefix': '', 'job_timeout': 180, "
    "'socket_timeout': 5} (url required)"
)


def run(delivery_id: int, engine: str, using: str = "default") -> None:
    """The RQ job: run the delivery through signalbox, return nothing to RQ."""
    deliver(delivery_id, engine=engine, using=using, task_of=RQEngine)


class RQEngine(Engine):
    """Enqueues one JSON-serialized RQ job per delivery, on RQ's ``"default"``
    queue for a receiver without ``queue=``, else on ``queue_prefix + queue``."""

    supports_queues: ClassVar[bool] = True

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.check_options(_OPTIONS, _USAGE, required=["url"])
        if not (url := options["url"]).startswith("redis"):
            raise self.option_error("url", "it must be a redis:// or rediss:// URL")
        self.queue_prefix = str(options.get("queue_prefix", ""))
        self.default_queue = "default"  # what `rq worker` consumes, unnamed
        self.job_timeout = int(options.get("job_timeout", 180))
        timeout = float(options.get("socket_timeout", 5))
        # Bounded timeouts and no retries: publish() must fail fast.
        self.redis = _clients.redis_client(url, timeout)
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        """The RQ queue a signalbox ``queue=`` name maps to (see
        :meth:`~signalbox.engines.Engine.broker_queue`)."""
        if name not in self._queues:
            self._queues[name] = Queue(
                self.broker_queue(name),
                connection=self.redis,
                serializer=JSONSerializer,
            )
        return self._queues[name]

    def worker_hint(self, queues: Sequence[str]) -> str:
        """``rq worker`` with the JSON serializer, naming queues unless only
        the default one."""
        command = "rq worker --serializer rq.serializers.JSONSerializer"
        if names := _clients.named_queues(self, queues):
            command += " " + " ".join(names)
        return f"`{command}`"

    def publish(self, handovers: Sequence[outbox.Handover]) -> None:
        """Enqueue every delivery in one Redis round trip; raise if Redis refuses."""
        with self.redis.pipeline() as pipe:
            for each in handovers:
                self.queue(each.queue).enqueue_call(
                    run,
                    args=(each.id, self.alias, each.using),
                    timeout=self.job_timeout,
                    result_ttl=0,
                    retry=None,
                    pipeline=pipe,
                )
            pipe.execute()

    def check(self) -> list[checks.CheckMessage]:
        """Nothing to report: Redis is reached only when publishing."""
        return []

    def close(self) -> None:
        """Close the Redis connection pool."""
        self.redis.close()
