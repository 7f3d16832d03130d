"""The benchmark's databases: created if missing, migrated, emptied between runs."""

from __future__ import annotations

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connections

# Every table a measurement writes to; emptied before each one.
_TABLES = {
    "default": [
        "signalbox_delivery",
        "signalbox_workerrecord",
        "outboxbench_order",
        "procrastinate_jobs",
        "procrastinate_workers",
        "django_tasks_database_dbtaskresult",
    ],
    "sqlite": ["signalbox_delivery", "signalbox_workerrecord", "outboxbench_order"],
}


def create_postgres_database() -> None:
    """Create the PostgreSQL database if it does not exist yet."""
    config = settings.DATABASES["default"]
    params = {"host": config["HOST"], "port": config["PORT"], "user": config["USER"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if found is None:
            admin.execute(f'CREATE DATABASE "{config["NAME"]}"')


def migrate(alias: str) -> None:
    call_command("migrate", database=alias, run_syncdb=True, verbosity=0)


def empty(alias: str) -> None:
    """Delete every row the benchmark wrote on ``alias``."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            tables = ", ".join(_TABLES[alias])
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        else:
            for table in _TABLES[alias]:
                cursor.execute(f"DELETE FROM {table}")


def analyze(alias: str) -> None:
    """Refresh the planner's statistics, as autovacuum would in production."""
    with connections[alias].cursor() as cursor:
        cursor.execute("ANALYZE")


def server_version(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        return str(cursor.fetchone()[0])
