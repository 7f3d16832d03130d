"""Settings for Celery worker processes started by tests/test_engine_celery.py.

The embedded workers' acceptance settings, with a ``"celery"`` engine on the
app named by ``SIGNALBOX_CELERY_APP``.
"""

from __future__ import annotations

import os

from tests.worker_settings import *  # noqa: F403
from tests.worker_settings import LOGGING, SIGNALBOX

# Celery's task tracer is imported before Django configures logging: kept
# enabled, it logs each task's end ("… succeeded in …"), which the tests wait for.
LOGGING = {**LOGGING, "disable_existing_loggers": False}

SIGNALBOX = {
    **SIGNALBOX,
    "ENGINES": {
        "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
        "celery": {
            "BACKEND": "signalbox.engines.celery.CeleryEngine",
            "OPTIONS": {
                "app": os.environ["SIGNALBOX_CELERY_APP"],
                "queue_prefix": "sbtest-celery-",
                "acks_late": os.environ.get("SIGNALBOX_CELERY_ACKS_LATE", "1") == "1",
            },
        },
    },
}
