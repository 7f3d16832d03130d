"""signalbox's settings: one ``SIGNALBOX`` dict in the Django settings.

Values are read once and cached; the cache is dropped whenever Django's
``setting_changed`` signal reports that ``SIGNALBOX`` changed (as
``override_settings`` does), so tests see their overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

from signalbox.exceptions import ConfigurationError

EMBEDDED = "signalbox.engines.embedded.EmbeddedEngine"
"""The BACKEND of the embedded worker's engine, the default one."""

DEFAULTS: Mapping[str, Any] = {
    "SLOW_RECEIVER_MS": 250,
    "LOOP_BLOCK_MS": 20,
    "LEASE_SECONDS": 30,
    "POLL_SECONDS": 1.0,
    "SHUTDOWN_GRACE_SECONDS": 25,
    "UNKNOWN_RECEIVER_GRACE_SECONDS": 3600,
    "COMPLETED_RETENTION_SECONDS": 86_400,
    "DEAD_RETENTION_SECONDS": 30 * 86_400,
    "DEAD_PAYLOAD_RETENTION_SECONDS": 7 * 86_400,
    "CODEC_TYPES": (),
    "SYNCHRONOUS_ACKS": False,
    "ENGINES": {"default": {"BACKEND": EMBEDDED}},
    "HANDOVER_GRACE_SECONDS": 10,
    "REDELIVER_SECONDS": 600,
    "UNSTARTED_WARNING_SECONDS": 300,
    "SNAPSHOT_EXCLUDE": {},
    "OUTBOX_DATABASES": ("default",),
    "HEALTH_MAX_WAIT_SECONDS": 300,
    "HEALTH_MAX_DEAD": 0,
    "HEALTH_DEAD_WINDOW_SECONDS": 3600,
    "HEALTH_TOKEN": "",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated, cached form of ``settings.SIGNALBOX``.

    Durations are kept in nanoseconds because the dispatch loop compares them
    with ``time.perf_counter_ns()`` readings.
    """

    slow_receiver_ns: int
    loop_block_ns: int
    lease: timedelta
    poll: timedelta
    shutdown_grace: timedelta
    unknown_receiver_grace: timedelta
    completed_retention: timedelta
    dead_retention: timedelta
    dead_payload_retention: timedelta
    codec_types: tuple[str, ...]
    synchronous_acks: bool
    engines: Mapping[str, EngineSettings]
    handover_grace: timedelta
    redeliver: timedelta
    unstarted_warning: timedelta
    snapshot_exclude: Mapping[str, frozenset[str]]
    """Fields no model snapshot holds, by lower-case ``app_label.modelname``."""
    outbox_databases: frozenset[str]
    health_max_wait: timedelta
    """``signalbox health`` fails when a due row has waited longer."""
    health_max_dead: int
    """... or when more rows than this went dead within ``health_dead_window``."""
    health_dead_window: timedelta
    health_token: str
    """The bearer token of :mod:`signalbox.contrib.health`; empty: staff only."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """One entry of ``SIGNALBOX["ENGINES"]``: the backend's dotted path and options."""

    backend: str
    options: Mapping[str, Any]


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
        lease=_seconds(values, "LEASE_SECONDS", minimum=1),
        poll=_seconds(values, "POLL_SECONDS", minimum=0.01),
        shutdown_grace=_seconds(values, "SHUTDOWN_GRACE_SECONDS"),
        unknown_receiver_grace=_seconds(values, "UNKNOWN_RECEIVER_GRACE_SECONDS"),
        completed_retention=_seconds(values, "COMPLETED_RETENTION_SECONDS"),
        dead_retention=_seconds(values, "DEAD_RETENTION_SECONDS"),
        dead_payload_retention=_seconds(values, "DEAD_PAYLOAD_RETENTION_SECONDS"),
        codec_types=_dotted_paths(values, "CODEC_TYPES"),
        synchronous_acks=_flag(values, "SYNCHRONOUS_ACKS"),
        engines=_engines(values),
        handover_grace=_seconds(values, "HANDOVER_GRACE_SECONDS"),
        redeliver=_seconds(values, "REDELIVER_SECONDS", minimum=1),
        unstarted_warning=_seconds(values, "UNSTARTED_WARNING_SECONDS"),
        snapshot_exclude=_snapshot_exclude(values),
        outbox_databases=_aliases(values, "OUTBOX_DATABASES"),
        health_max_wait=_seconds(values, "HEALTH_MAX_WAIT_SECONDS"),
        health_max_dead=_count(values, "HEALTH_MAX_DEAD"),
        health_dead_window=_seconds(values, "HEALTH_DEAD_WINDOW_SECONDS", minimum=1),
        health_token=_token(values, "HEALTH_TOKEN"),
    )


def _number(values: Mapping[str, Any], key: str, unit: str, minimum: float) -> float:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be a number of {unit} >= {minimum}, "
            f"not {value!r}."
        )
    return float(value)


def _milliseconds(values: Mapping[str, Any], key: str) -> int:
    return int(_number(values, key, "milliseconds", 0) * 1_000_000)


def _seconds(values: Mapping[str, Any], key: str, minimum: float = 0) -> timedelta:
    return timedelta(seconds=_number(values, key, "seconds", minimum))


def _count(values: Mapping[str, Any], key: str) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be a whole number >= 0, not {value!r}."
        )
    return value


MIN_TOKEN_LENGTH = 32
"""The shortest ``HEALTH_TOKEN`` accepted: guessing it must be hopeless."""


def _token(values: Mapping[str, Any], key: str) -> str:
    """A secret compared with what a request presents: empty (no token is
    accepted), or long enough not to be guessed."""
    value = values[key]
    if not isinstance(value, str) or 0 < len(value) < MIN_TOKEN_LENGTH:
        shown = (
            f"a string of {len(value)} characters"
            if isinstance(value, str)
            else f"of type {type(value).__name__}"
        )
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be empty (no token) or a string of "
            f"at least {MIN_TOKEN_LENGTH} characters, such as "
            f"secrets.token_urlsafe(32) makes; it is {shown}."
        )
    return value


def _engines(values: Mapping[str, Any]) -> Mapping[str, EngineSettings]:
    """``ENGINES``, shaped like Django's ``CACHES``; only the shape is checked
    here (:mod:`signalbox.engines` loads and checks each backend)."""
    value = values["ENGINES"]
    advice = (
        'it maps aliases to {"BACKEND": "dotted.path.Engine", "OPTIONS": {...}}, '
        'and needs a "default"'
    )
    if not isinstance(value, Mapping) or "default" not in value:
        raise ConfigurationError(
            f"settings.SIGNALBOX['ENGINES'] must be a dict: {advice}; not {value!r}."
        )
    engines = {}
    for alias, entry in value.items():
        where = f"settings.SIGNALBOX['ENGINES'][{alias!r}]"
        if not isinstance(alias, str) or not alias or len(alias) > 64:
            raise ConfigurationError(f"{where}: an alias is a short string; {advice}.")
        if not isinstance(entry, Mapping) or not isinstance(entry.get("BACKEND"), str):
            raise ConfigurationError(f"{where} must name a BACKEND; {advice}.")
        unknown = sorted(set(entry) - {"BACKEND", "OPTIONS"})
        options = entry.get("OPTIONS", {})
        if unknown or not isinstance(options, Mapping):
            wrong = unknown or options
            raise ConfigurationError(
                f"{where} takes BACKEND and OPTIONS (a dict) only, not {wrong!r}."
            )
        engines[alias] = EngineSettings(entry["BACKEND"], dict(options))
    return engines


def _flag(values: Mapping[str, Any], key: str) -> bool:
    value = values[key]
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be True or False, not {value!r}."
        )
    return value


def _dotted_paths(values: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = values[key]
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) for v in value
    ):
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be a list of dotted paths, "
            f"not {value!r}."
        )
    return tuple(value)


def _snapshot_exclude(values: Mapping[str, Any]) -> Mapping[str, frozenset[str]]:
    """``SNAPSHOT_EXCLUDE``'s shape: ``{"app_label.Model": ["field", ...]}``.

    Whether the models and fields exist is for ``manage.py check`` to say
    (signalbox.E010): settings are read before the models are loaded.
    """
    value = values["SNAPSHOT_EXCLUDE"]
    where = "settings.SIGNALBOX['SNAPSHOT_EXCLUDE']"
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f'{where} must be a dict like {{"auth.User": ["email"]}}, not a '
            f"{type(value).__name__}."
        )
    excluded = {}
    for label, names in value.items():
        if (
            not isinstance(label, str)
            or label.count(".") != 1
            or "" in label.split(".")
        ):
            raise ConfigurationError(
                f"{where} has the key {label!r}; its keys are model labels, "
                f'"app_label.ModelName".'
            )
        if not isinstance(names, list | tuple | set | frozenset) or not all(
            isinstance(name, str) and name for name in names
        ):
            raise ConfigurationError(
                f"{where}[{label!r}] must be a list of field names, not {names!r}."
            )
        excluded[label.lower()] = frozenset(names)
    return excluded


def _aliases(values: Mapping[str, Any], key: str) -> frozenset[str]:
    value = values[key]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ConfigurationError(
            f"settings.SIGNALBOX[{key!r}] must be a non-empty list of database "
            f"aliases (keys of settings.DATABASES), not {value!r}."
        )
    return frozenset(value)


def reset(**_: object) -> None:
    """Forget the cached settings so the next :func:`get` reads them again."""
    global _current
    _current = None


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "SIGNALBOX":
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="signalbox.conf")
