from __future__ import annotations

from django.apps import AppConfig


class OutboxBenchConfig(AppConfig):
    name = "outboxbench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the background receivers, in the driver and in workers.
        from outboxbench import receivers  # noqa: F401
