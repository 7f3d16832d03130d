"""signalbox's settings: one ``SIGNALBOX`` dict in the Django settings.

Values are read once and cached; the cache is dropped whenever Django's
``setting_changed`` signal reports that ``SIGNALBOX`` changed (as
``override_settings`` does), so tests see their overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

from signalbox.exceptions import ConfigurationError

DEFAULTS: Mapping[str, Any] = {
    "SLOW_RECEIVER_MS": 250,
    "LOOP_BLOCK_MS": 20,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated, cached form of ``settings.SIGNALBOX``.

    Durations are kept in nanoseconds because the dispatch loop compares them
    with ``time.perf_counter_ns()`` readings.
    """

    slow_receiver_ns: int
    loop_block_ns: int


_current: Settings | None = None


def get() -> Settings:
    """Return the current settings, reading and validating them on first use.

    Raises :class:`~signalbox.exceptions.ConfigurationError` naming the bad key.
    Works before Django is configured (the defaults apply), because a signal
    may be sent from a script that never calls ``settings.configure()``.
    """
    global _current
    if _current is None:
        _current = _load()
    return _current


def _load() -> Settings:
    raw: object = {}
    if django_settings.configured:
        raw = getattr(django_settings, "SIGNALBOX", {})
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"settings.SIGNALBOX must be a dict, not {type(raw).__name__}."
        )
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"settings.SIGNALBOX has unknown keys {unknown}; "
            f"the known keys are {sorted(DEFAULTS)}."
        )
    values = {**DEFAULTS, **raw}
    return Settings(
        slow_receiver_ns=_milliseconds(values, "SLOW_RECEIVER_MS"),
        loop_block_ns=_milliseconds(values, "LOOP_BLOCK_MS"),
    )


def _milliseconds(values: Mapping[str, Any], key: str) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be a number of milliseconds >= 0, "
            f"not {value!r}."
        )
    return int(value * 1_000_000)


def reset(**_: object) -> None:
    """Forget the cached settings so the next :func:`get` reads them again."""
    global _current
    _current = None


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "SIGNALBOX":
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="signalbox.conf")
