"""Broker clients for the engines' ``publish()``: bounded timeouts, no retries.

A hand-over runs on the hand-over thread and in the relay, never in a
request, but a broker that is down must still make it fail within seconds
(the rows then wait for the relay), not hang it behind a client's retries.
Client libraries are imported only by the engine that uses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.utils.module_loading import import_string

from signalbox.exceptions import ConfigurationError

if TYPE_CHECKING:
    import dramatiq
    from redis import Redis

    from signalbox.engines import Engine


def redis_client(url: str, timeout: float) -> Redis:
    """A Redis client whose every call gives up after ``timeout`` seconds."""
    from redis import Redis  # the redis extra, for the engines that use it

    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
    )


def named_queues(engine: Engine, queues: Sequence[str]) -> list[str]:
    """The broker's names for ``queues``, sorted; none when they are only the
    engine's default queue (a worker consumes it unless told otherwise)."""
    names = sorted({engine.broker_queue(q) for q in queues})
    return [] if names == [engine.default_queue] else names


def dramatiq_broker(alias: str, where: Any, timeout: float) -> dramatiq.Broker:
    """The Dramatiq broker ``OPTIONS["broker"]`` names: a ``redis://`` or
    ``amqp://`` URL (bounded by ``timeout``), or a dotted path to one."""
    import dramatiq

    url = where if isinstance(where, str) else ""
    if url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        client = redis_client(url, timeout)
        return RedisBroker(client=client)  # type: ignore[no-untyped-call]
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Without these, pika retries and waits long enough to stall a hand-over.
        fast = dict.fromkeys(["socket_timeout", "blocked_connection_timeout"], timeout)
        parts = urlsplit(url)
        query = {"connection_attempts": 1, **fast, **dict(parse_qsl(parts.query))}
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return RabbitmqBroker(url=url, confirm_delivery=True)
    try:
        found = import_string(url)  # a path from settings, never a message
    except ImportError:
        found = None
    if not isinstance(found, dramatiq.Broker):
        raise ConfigurationError(
            f"The Dramatiq engine {alias!r} needs OPTIONS['broker']: a redis:// or "
            f"amqp:// URL, or the dotted path of a dramatiq.Broker, not {where!r}."
        )
    return found


def celery_producer(app: Any, wait: float, amqp: bool) -> Any:
    """A kombu producer on ``app``'s broker that waits at most ``wait`` seconds
    and, on AMQP, has each message confirmed."""
    bounded = {"max_retries": 0, "socket_timeout": wait, "read_timeout": wait}
    if amqp:  # else RabbitMQ may drop a message and raise nothing
        bounded |= {"write_timeout": wait, "confirm_publish": True}
    connection = app.connection_for_write(
        connect_timeout=wait, transport_options=bounded
    )
    return connection.Producer()


_JSON = {"json", "application/json"}


def refuse_unless_json(alias: str, app: Any) -> None:
    """Refuse a Celery app that accepts anything but JSON: pickle runs code
    from the broker."""
    if accepted := {*app.conf.accept_content, app.conf.task_serializer} - _JSON:
        raise ConfigurationError(
            f"The Celery engine {alias!r} runs only with JSON, but its app accepts "
            f"{sorted(accepted)}: set accept_content=['json'] and "
            f"task_serializer='json' (pickle runs code from the broker)."
        )


def send_celery(
    task: Any, producer: Any, args: list[Any], queue: str, priority: int, amqp: bool
) -> None:
    """One JSON message for ``task``, where ``task.apply_async()`` ends,
    without its option merging and routing (which cost more than the
    publish): the options are the engine's. ``priority`` is clamped to
    0 (first) … 9, and inverted for AMQP, where 9 goes first."""
    priority = min(max(priority, 0), 9)
    priority = 9 - priority if amqp else priority
    app, name = task.app, task.name
    sent = app.conf.task_send_sent_event
    message = app.amqp.create_task_message(
        str(uuid.uuid4()),  # what celery.uuid() returns
        name,
        args,
        {},
        create_sent_event=sent,
        ignore_result=True,
    )
    app.amqp.send_task_message(
        producer,
        name,
        message,
        queue=queue,
        priority=priority,
        retry=False,
        serializer="json",
    )
