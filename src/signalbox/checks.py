"""System checks: signalbox's settings are validated by ``manage.py check``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks

from signalbox import conf
from signalbox.exceptions import ConfigurationError


@checks.register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report a malformed ``SIGNALBOX`` setting as error ``signalbox.E001``."""
    conf.reset()
    try:
        conf.get()
    except ConfigurationError as error:
        return [checks.Error(str(error), id="signalbox.E001")]
    return []
