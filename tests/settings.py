"""Settings for signalbox's own test suite.

``SIGNALBOX_TEST_DB`` picks the database engine the suite runs on: ``sqlite``
(the default, no service needed), ``postgres`` (the local server on
127.0.0.1:5432) or ``mysql`` (the local MariaDB or MySQL server on
127.0.0.1:3306). Each configures two aliases, ``default`` and ``other``, so
tests can check that deferred receivers follow the alias a signal names.
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ENGINE = os.environ.get("SIGNALBOX_TEST_DB", "sqlite")
_SUFFIX = os.environ.get("SIGNALBOX_TEST_DB_SUFFIX", "")


def _database(name: str) -> dict[str, Any]:
    if ENGINE == "postgres":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("SIGNALBOX_PG_NAME", "test"),
            "USER": os.environ.get("SIGNALBOX_PG_USER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
            # A suffix lets several suites share the server without colliding.
            "TEST": {"NAME": f"signalbox_test_{name}{_SUFFIX}"},
        }
    if ENGINE == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("SIGNALBOX_MYSQL_NAME", "test"),
            "USER": os.environ.get("SIGNALBOX_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("SIGNALBOX_MYSQL_PASSWORD", ""),
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "OPTIONS": {
                "charset": "utf8mb4",
                # What docs/databases.md recommends for signalbox, spelt out
                # rather than left to Django's default (the same). Under
                # REPEATABLE READ, InnoDB's locking reads (the worker's
                # SELECT ... FOR UPDATE SKIP LOCKED) also take gap locks on
                # the index ranges they walk, which stall the sends inserting
                # into those ranges and make deadlocks between claims and
                # sends; READ COMMITTED locks only the rows it returns.
                "isolation_level": "read committed",
                # The database's clock decides leases and due times, and
                # DATETIME columns carry no zone: NOW() must be UTC, as the
                # values Django writes are with USE_TZ.
                "init_command": "SET time_zone = '+00:00'",
            },
            "TEST": {
                "NAME": f"signalbox_test_{name}{_SUFFIX}",
                "CHARSET": "utf8mb4",
                "COLLATION": "utf8mb4_unicode_ci",
            },
        }
    if ENGINE == "sqlite":
        # Files, not memory: acceptance tests start worker processes that
        # must see the test database. WAL lets readers run beside the one
        # writer; IMMEDIATE transactions take the write lock up front, so two
        # writers queue (for up to `timeout` seconds) instead of deadlocking.
        # One file per test process, so concurrent runs never share one.
        folder = Path(tempfile.gettempdir())
        path = folder / f"signalbox_test_{name}{_SUFFIX}_{os.getpid()}.sqlite3"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "TEST": {"NAME": str(path)},
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    raise ValueError(
        f"SIGNALBOX_TEST_DB must be 'sqlite', 'postgres' or 'mysql', not {ENGINE!r}"
    )


SECRET_KEY = "signalbox-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost"]
DATABASES = {"default": _database("default"), "other": _database("other")}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "signalbox",
    "tests.testapp.apps.TestAppConfig",
]
# What the admin needs, and nothing else: the other views must not depend on it.
MIDDLEWARE: list[str] = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# The Tasks engine's tests run django-tasks-db's worker on the test database.
if find_spec("django_tasks_db"):
    if not find_spec("django.tasks"):  # Django 5.2: the backport is an app
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
TASKS = {
    "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    "db": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}
if not find_spec("django.tasks"):
    TASKS["default"]["BACKEND"] = "django_tasks.backends.immediate.ImmediateBackend"
# The Django-Q engine's tests run qcluster with its ORM broker (and Redis db 6).
# Not when mypy's Django plugin reads these settings: Django-Q2 has no types.
if find_spec("django_q") and "mypy" not in sys.modules:
    INSTALLED_APPS.append("django_q")
Q_CLUSTER = {"name": "sbtest-engines", "orm": "default", "timeout": 30, "retry": 60}
ROOT_URLCONF = "tests.testapp.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
