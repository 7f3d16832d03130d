"""Imported by Celery workers once Django is set up: connects the receivers,
unless the test starts a worker that lacks them."""

import os

from tests.testapp import celery_jobs

if os.environ.get("SIGNALBOX_CELERY_RECEIVERS", "1") == "1":
    celery_jobs.connect()
