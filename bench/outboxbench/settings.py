"""Settings shared by the benchmark driver and every worker process it starts.

Two databases: ``default`` is PostgreSQL (the local server, database
``signalbox_bench``, created by the driver) and ``sqlite`` a WAL-mode file
with the options of signalbox's own test settings. Workers are pointed at
one of them with ``--database``; the peers (Celery, procrastinate,
django-tasks) use ``default`` only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

STATE = Path(
    os.environ.get("SIGNALBOX_BENCH_STATE", Path(tempfile.gettempdir()) / "sb-bench")
)
PG_NAME = os.environ.get("SIGNALBOX_BENCH_PG_NAME", "signalbox_bench")
REDIS_URL = os.environ.get("SIGNALBOX_BENCH_REDIS", "redis://127.0.0.1:6379/12")

SECRET_KEY = "signalbox-bench-only"
DEBUG = False  # DEBUG would record every query
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PG_NAME,
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(STATE / "outbox.sqlite3"),
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    },
}
DATABASE_ROUTERS = ["outboxbench.routers.SQLiteHoldsSignalboxOnly"]
INSTALLED_APPS = [
    "signalbox",
    "django_tasks",
    "django_tasks_db",
    "procrastinate.contrib.django",
    "outboxbench.apps.OutboxBenchConfig",
]
MIDDLEWARE: list[str] = []
LOGGING_CONFIG = None

# signalbox's defaults, except where the driver says otherwise: on SQLite,
# which has no NOTIFY, an idle worker finds new rows only by polling.
SIGNALBOX = {"POLL_SECONDS": float(os.environ.get("SIGNALBOX_BENCH_POLL", "1.0"))}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
