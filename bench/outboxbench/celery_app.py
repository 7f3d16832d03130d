"""Celery on the local Redis, with its Django integration as a project has it.

``DjangoTask`` gives ``delay_on_commit``; Celery's Django fix-up (active
because ``DJANGO_SETTINGS_MODULE`` is set) sets Django up in the worker.
When ``SIGNALBOX_BENCH_PROGRESS`` names a folder, each worker process
records its progress there (see :class:`outboxbench.marks.Progress`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

from outboxbench import marks
from outboxbench.settings import REDIS_URL

QUEUE = "signalbox-bench"

app = Celery("outboxbench", task_cls="celery.contrib.django.task:DjangoTask")
app.conf.update(
    broker_url=REDIS_URL,
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    # bench/engines.py compares with the Celery engine, whose task acks late.
    task_acks_late=os.environ.get("SIGNALBOX_BENCH_ACKS_LATE") == "1",
)
# Celery's Django fix-up closes the database connection before and after
# every task unless told to reuse it; a task that uses the database (each
# signalbox delivery does) would open one per task. A project sets the same.
app.conf["CELERY_DB_REUSE_MAX"] = 1000


@app.task(name="outboxbench.noop")
def noop(order_id: int) -> None:
    """Does nothing."""


@app.task(name="outboxbench.stamp")
def stamp(sample: int, port: int) -> None:
    marks.stamp(sample, port)


_progress: marks.Progress | None = None


@signals.task_prerun.connect
def _started(**kwargs: Any) -> None:
    global _progress
    folder = os.environ.get("SIGNALBOX_BENCH_PROGRESS")
    if folder:
        if _progress is None:
            _progress = marks.Progress(Path(folder))
        _progress.started()


@signals.task_postrun.connect
def _ended(**kwargs: Any) -> None:
    if _progress is not None:
        _progress.ended()
