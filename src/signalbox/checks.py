"""System checks: signalbox's settings are validated by ``manage.py check``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from signalbox import _travel, conf, doctor, engines, registry, status
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


@checks.register()
def check_untravelled_arguments(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn (``signalbox.W010``) about a background receiver on a signal known
    to carry arguments that cannot travel (``user_logged_in``'s ``request``,
    say) when it neither prepares nor excludes them: its first send would
    raise ``CodecError`` in the sender."""
    messages: list[checks.CheckMessage] = []
    for signal in registry.registry.signals():
        name = registry.signal_name(signal)
        # The objects connected now: a receiver disconnected behind
        # signalbox's back (through Django's own disconnect) is not reported.
        for connected, sender in registry.registry.connections(signal):
            info = registry.registry.info(signal, connected, sender)
            left = _travel.left_in(name, info.keyed, info.travel) if info else {}
            if info is not None and left:
                messages.append(_untravelled_warning(name, info.key, left))
    return messages


def _untravelled_warning(
    signal: str, key: str, left: dict[str, str]
) -> checks.CheckMessage:
    reasons = "; ".join(f"{name!r} is {why}" for name, why in left.items())
    return checks.Warning(
        f"{key} runs in the background, but {signal} sends arguments that "
        f"cannot travel to it ({reasons}): every send would raise CodecError "
        f"in the sender.",
        hint=(
            f"Connect it with exclude={sorted(left)!r} if it does not need "
            f"them, or with prepare= returning what it needs (see "
            f"docs/background.md, 'What travels'); or run it inline or "
            f"on_commit."
        ),
        id="signalbox.W010",
    )


@checks.register()
def check_snapshot_exclude(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report a ``SIGNALBOX["SNAPSHOT_EXCLUDE"]`` entry naming a model or a
    field that does not exist (``signalbox.E010``): a misspelt field would
    travel in every snapshot."""
    try:
        excluded = conf.get().snapshot_exclude
    except ConfigurationError:
        return []  # check_settings reports it
    messages: list[checks.CheckMessage] = []
    for label, names in sorted(excluded.items()):
        for problem in _missing(label, names):
            messages.append(
                checks.Error(
                    f"settings.SIGNALBOX['SNAPSHOT_EXCLUDE'] names {problem}.",
                    hint="Use an installed model's label and its field names.",
                    id="signalbox.E010",
                )
            )
    return messages


def _missing(label: str, names: frozenset[str]) -> list[str]:
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return [f"{label!r}, which is not an installed model"]
    missing = []
    for name in sorted(names):
        try:
            model._meta.get_field(name)
        except FieldDoesNotExist:
            if not any(f.attname == name for f in model._meta.concrete_fields):
                missing.append(f"the field {name!r}, which {model._meta.label} lacks")
    return missing


@checks.register()
def check_relay(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """Warn (``signalbox.W005``) when rows of an engine other than the
    embedded worker are due and only a relay can hand them over, but no
    relay was seen lately (``--database`` names the databases to look at;
    the default one otherwise).

    Without such an engine it asks the database nothing; a database that
    cannot be read yet (before ``migrate``) is no warning.
    """
    try:
        if not engines.aliases(embedded=False):
            return []
    except ConfigurationError:  # signalbox.E001/E002 say what is wrong
        return []
    messages: list[checks.CheckMessage] = []
    for using in databases or [DEFAULT_DB_ALIAS]:
        try:
            warning = status.relay_warning(using=using)
        except DatabaseError:
            continue
        if warning:
            messages.append(
                checks.Warning(
                    f"Database {using!r}: {warning}",
                    hint=status.RELAY_HINT,
                    id="signalbox.W005",
                )
            )
    return messages


@checks.register()
def check_receivers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The doctor's rules that read only code, as warnings: a receiver in the
    request doing blocking I/O (``signalbox.W020``), a weak connection
    nothing holds (``signalbox.W021``), a receiver connected twice
    (``signalbox.W022``). See ``manage.py signalbox doctor``."""
    check_ids = {finding: check for finding, (_, check) in doctor.CHECKS.items()}
    rules = tuple(rule for rule, _ in doctor.CHECKS.values())
    return [
        checks.Warning(
            f"{finding.subject} ({finding.location}): {finding.why}",
            hint=f"{finding.fix} (signalbox doctor {finding.id})",
            id=check_ids[finding.id],
        )
        for finding in doctor.diagnose(rules=rules)
    ]
