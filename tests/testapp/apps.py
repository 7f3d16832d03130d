from __future__ import annotations

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the background receivers that worker processes run.
        from django.conf import settings

        from tests.testapp import jobs, remote_jobs  # noqa: F401

        # Engine worker processes (tests/engine_worker_settings.py) run these,
        # unless the test starts one that lacks them.
        remote = "remote" in getattr(settings, "SIGNALBOX", {}).get("ENGINES", {})
        if remote and getattr(settings, "TEST_REMOTE_RECEIVERS", True):
            remote_jobs.connect()
