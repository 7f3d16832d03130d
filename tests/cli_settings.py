"""Worker settings as a fresh ``startproject`` has them: Django's own logging
configuration, with no handler for signalbox's loggers."""

from __future__ import annotations

from tests.worker_settings import *  # noqa: F403

LOGGING = {"version": 1, "disable_existing_loggers": False}
