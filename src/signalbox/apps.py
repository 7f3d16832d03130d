"""The Django app: add ``"signalbox"`` to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class SignalboxConfig(AppConfig):
    """Registers signalbox's system checks and management command."""

    name = "signalbox"
    label = "signalbox"
    verbose_name = "signalbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from signalbox import (
            checks,  # noqa: F401  (registers the checks)
            engines,
        )

        # A misconfigured engine fails here, at startup, not at the first send.
        engines.load_all()
