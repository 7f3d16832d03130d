"""Celery apps for the Celery engine's tests, one per broker.

Worker processes start with ``-A tests.testapp.celery_app:<name>`` and the
settings of tests/celery_settings.py; the test process publishes through the
same app. Everything lives in Redis database 3 or under ``sbtest-celery-``
queue names, so other suites on the same brokers are left alone
(``plain_app`` uses Celery's default queue, ``celery``, in database 3).
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "sbtest-celery-default"
TASK_RETURNED = "sbtest: a task returned"  # said by a worker without receivers
PRIVATE_REDIS_PORT = 6390
PRIVATE_RABBITMQ_PORT = 5673


def _app(name: str, url: str, queue: str | None = QUEUE, **transport: object) -> Celery:
    app = Celery(name)
    if queue is not None:
        app.conf.task_default_queue = queue
    app.conf.update(
        broker_url=url,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        accept_content=["json"],
        worker_enable_remote_control=False,  # no pidbox exchange on shared brokers
        worker_hijack_root_logger=False,
        # The worker connects the receivers once Django is set up.
        imports=["tests.testapp.celery_worker"],
    )
    return app


redis_app = _app("sbtest-redis", "redis://127.0.0.1:6379/3")
amqp_app = _app("sbtest-amqp", "amqp://guest:guest@127.0.0.1:5672//")
# Celery's own default queue ("celery"), as a project that never set one has.
plain_app = _app("sbtest-plain", "redis://127.0.0.1:6379/3", queue=None)
private_app = _app(
    "sbtest-private",
    f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0",
    visibility_timeout=float(os.environ.get("SIGNALBOX_CELERY_VISIBILITY", "3600")),
)
private_amqp_app = _app(
    "sbtest-private-amqp", f"amqp://guest:guest@127.0.0.1:{PRIVATE_RABBITMQ_PORT}//"
)
