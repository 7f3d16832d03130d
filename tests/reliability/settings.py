"""Settings for the reliability harness: the driver and every worker it starts.

Two databases: ``default`` is the private PostgreSQL cluster (never the
shared server: fault scenarios crash it), ``sqlite`` a file of its own. The
port and file are chosen by the first process that imports this module and
handed to the processes it starts through the environment, as are the
worker knobs (lease, poll, grace) each scenario sets.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


os.environ.setdefault("SIGNALBOX_REL_PG_PORT", str(_free_port()))
os.environ.setdefault(
    "SIGNALBOX_REL_SQLITE",
    str(Path(tempfile.gettempdir()) / f"signalbox-rel-{os.getpid()}.sqlite3"),
)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "signalbox_rel",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ["SIGNALBOX_REL_PG_PORT"],
        "OPTIONS": {
            "application_name": os.environ.get("SIGNALBOX_REL_APP", "signalbox-rel"),
        },
    },
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["SIGNALBOX_REL_SQLITE"],
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    },
}
INSTALLED_APPS = [*INSTALLED_APPS, "tests.reliability.apps.ReliabilityConfig"]

SIGNALBOX = {
    "LEASE_SECONDS": float(os.environ.get("SIGNALBOX_REL_LEASE", "1")),
    "POLL_SECONDS": float(os.environ.get("SIGNALBOX_REL_POLL", "0.1")),
    "SHUTDOWN_GRACE_SECONDS": float(os.environ.get("SIGNALBOX_REL_GRACE", "5")),
    "UNKNOWN_RECEIVER_GRACE_SECONDS": float(
        os.environ.get("SIGNALBOX_REL_UNKNOWN_GRACE", "0")
    ),
    "COMPLETED_RETENTION_SECONDS": float(
        os.environ.get("SIGNALBOX_REL_COMPLETED_RETENTION", "86400")
    ),
    "DEAD_RETENTION_SECONDS": float(
        os.environ.get("SIGNALBOX_REL_DEAD_RETENTION", "2592000")
    ),
}
# Workers log to their own files; the driver leaves logging to pytest.
LOGGING_CONFIG = (
    "logging.config.dictConfig" if os.environ.get("SIGNALBOX_REL_WORKER") else None
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "signalbox": {"handlers": ["console"], "level": "INFO", "propagate": False}
    },
}
