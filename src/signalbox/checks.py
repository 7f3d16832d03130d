"""System checks: signalbox's settings are validated by ``manage.py check``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from signalbox import conf, engines, registry
from signalbox.exceptions import ConfigurationError


@checks.register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report a malformed ``SIGNALBOX`` setting as error ``signalbox.E001``,
    and so an ``OUTBOX_DATABASES`` alias that ``DATABASES`` does not have."""
    conf.reset()
    try:
        unknown = sorted(conf.get().outbox_databases - set(settings.DATABASES))
    except ConfigurationError as error:
        return [checks.Error(str(error), id="signalbox.E001")]
    if unknown:
        why = f"settings.SIGNALBOX['OUTBOX_DATABASES'] names {unknown}, "
        why += f"which settings.DATABASES does not have ({sorted(settings.DATABASES)})."
        return [checks.Error(why, id="signalbox.E001")]
    return []


@checks.register()
def check_engines(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report engines that cannot be built (``signalbox.E002``), what each
    engine's own ``check()`` says, and receivers that ask an engine for what
    it does not support (``signalbox.W001``)."""
    try:
        built = engines.load_all()
    except ConfigurationError as error:
        return [checks.Error(str(error), id="signalbox.E002")]
    messages: list[checks.CheckMessage] = []
    for engine in built.values():
        messages += engine.check()
    infos = [f.info for found in registry.registry.background().values() for f in found]
    for info in infos:
        policy = info.policy
        if policy is None or policy.engine not in built:
            continue
        engine = built[policy.engine]
        unsupported = [
            option
            for option, used, supported in (
                ("queue", policy.queue != "default", engine.supports_queues),
                ("priority", policy.priority != 0, engine.supports_priority),
            )
            if used and not supported
        ]
        if unsupported:
            messages.append(
                checks.Warning(
                    f"{info.key} sets {' and '.join(unsupported)}, which engine "
                    f"{policy.engine!r} ({type(engine).__name__}) does not use.",
                    hint="Drop the option, or pick an engine that supports it.",
                    id="signalbox.W001",
                )
            )
    return messages


@checks.register()
def check_databases(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn (``signalbox.W002``) about a MySQL or MariaDB database whose
    ``OPTIONS["isolation_level"]`` is not READ COMMITTED (Django's default)."""
    messages: list[checks.CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        if not str(database.get("ENGINE", "")).endswith(".mysql"):
            continue
        options = database.get("OPTIONS") or {}
        level = options.get("isolation_level", "read committed")
        if level is not None and str(level).lower() == "read committed":
            continue
        runs = (
            "leaves the isolation level to the server (InnoDB's default is "
            "REPEATABLE READ)"
            if level is None
            else f"runs {str(level).upper()}"
        )
        messages.append(
            checks.Warning(
                f"Database {alias!r} {runs}: signalbox's workers claim rows "
                "with SELECT ... FOR UPDATE SKIP LOCKED, which above READ "
                "COMMITTED also locks the gaps it walks (stalling sends) and "
                "skips rows nobody holds.",
                hint='Set OPTIONS["isolation_level"] to "read committed", '
                "or leave it out (Django's default).",
                id="signalbox.W002",
            )
        )
    return messages
