"""Settings for worker processes started by the acceptance tests.

The test run's own settings, pointed at the database the test created (its
name arrives in ``SIGNALBOX_WORKER_DB``) and with short leases, so that
crashes are recovered from within a test's patience.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["SIGNALBOX_WORKER_DB"]
if "SIGNALBOX_WORKER_OTHER_DB" in os.environ:  # the test's own "other" database
    DATABASES["other"]["NAME"] = os.environ["SIGNALBOX_WORKER_OTHER_DB"]
SIGNALBOX = {
    "LEASE_SECONDS": float(os.environ.get("SIGNALBOX_WORKER_LEASE", "2")),
    "POLL_SECONDS": float(os.environ.get("SIGNALBOX_WORKER_POLL", "0.05")),
    "SHUTDOWN_GRACE_SECONDS": float(os.environ.get("SIGNALBOX_WORKER_GRACE", "10")),
    "UNKNOWN_RECEIVER_GRACE_SECONDS": 0,
}
LOGGING_CONFIG = "logging.config.dictConfig"
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"signalbox": {"handlers": ["console"], "level": "INFO"}},
}
