"""Only signalbox and the benchmark's own table live in the SQLite database."""

from __future__ import annotations

from typing import Any

SQLITE_APPS = frozenset({"signalbox", "outboxbench"})


class SQLiteHoldsSignalboxOnly:
    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db != "sqlite" or app_label in SQLITE_APPS
