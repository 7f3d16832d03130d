"""Imported by Celery workers once Django is set up: connects the receivers,
unless the test starts a worker that lacks them (which then says when each
task has returned: Django's logging setup silences Celery's own line)."""

import os
import sys
from typing import Any

from celery import signals

from tests.testapp import celery_jobs
from tests.testapp.celery_app import TASK_RETURNED

if os.environ.get("SIGNALBOX_CELERY_RECEIVERS", "1") == "1":
    celery_jobs.connect()
else:

    @signals.task_postrun.connect(weak=False)
    def _returned(**kwargs: Any) -> None:
        print(TASK_RETURNED, file=sys.stderr, flush=True)
