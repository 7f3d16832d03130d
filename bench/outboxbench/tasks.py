"""The peers' no-op tasks (procrastinate and django-tasks find them here).

Celery's live in :mod:`outboxbench.celery_app`.
"""

from __future__ import annotations

from django_tasks import task as django_task
from procrastinate.contrib.django import app as procrastinate_app

from outboxbench import marks

QUEUE = "signalbox-bench"


@procrastinate_app.task(name="outboxbench.noop", queue=QUEUE)
def procrastinate_noop(order_id: int) -> None:
    """Does nothing."""


@procrastinate_app.task(name="outboxbench.stamp", queue=QUEUE)
def procrastinate_stamp(sample: int, port: int) -> None:
    marks.stamp(sample, port)


@django_task()
def django_tasks_noop(order_id: int) -> None:
    """Does nothing."""
