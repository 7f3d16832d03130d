"""Imported by Celery workers once Django is set up: connects the receivers."""

from tests.testapp import celery_jobs

celery_jobs.connect()
