"""The SIGNALBOX setting: defaults, validation, and overrides in tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks
from django.test import override_settings

from signalbox import ConfigurationError, conf
from signalbox.checks import check_databases, check_settings


def test_defaults() -> None:
    with override_settings():
        settings = conf.get()
    assert settings.slow_receiver_ns == 250_000_000
    assert settings.loop_block_ns == 20_000_000
    assert settings.dead_payload_retention == timedelta(days=7)
    assert settings.dead_retention == timedelta(days=30)
    assert settings.outbox_databases == {"default"}


def test_override_settings_is_seen_and_undone() -> None:
    with override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": 5}):
        assert conf.get().slow_receiver_ns == 5_000_000
    assert conf.get().slow_receiver_ns == 250_000_000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict, not list"),
        ({"SLOW_MS": 1}, r"unknown keys \['SLOW_MS'\]; the known keys are"),
        ({"SLOW_RECEIVER_MS": -1}, r"SIGNALBOX\['SLOW_RECEIVER_MS'\] must be a number"),
        ({"LOOP_BLOCK_MS": "20"}, r"SIGNALBOX\['LOOP_BLOCK_MS'\] must be a number"),
        ({"LOOP_BLOCK_MS": True}, r"must be a number of milliseconds >= 0, not True"),
        (
            {"DEAD_PAYLOAD_RETENTION_SECONDS": -1},
            r"\['DEAD_PAYLOAD_RETENTION_SECONDS'\] must be a number of seconds",
        ),
        ({"OUTBOX_DATABASES": "default"}, r"non-empty list of database aliases"),
        ({"OUTBOX_DATABASES": []}, r"\['OUTBOX_DATABASES'\] must be a non-empty"),
    ],
)
def test_bad_values_are_named(value: object, message: str) -> None:
    with (
        override_settings(SIGNALBOX=value),
        pytest.raises(ConfigurationError, match=message),
    ):
        conf.get()


def test_configuration_errors_are_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured

    assert issubclass(ConfigurationError, ImproperlyConfigured)


def test_the_settings_check_is_registered() -> None:
    assert check_settings in checks.registry.registry.get_checks()


def test_system_check_reports_a_bad_setting() -> None:
    with override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": "fast"}):
        errors = check_settings()
    assert [error.id for error in errors] == ["signalbox.E001"]
    assert "SLOW_RECEIVER_MS" in errors[0].msg


def test_system_check_reports_an_outbox_database_django_does_not_have() -> None:
    with override_settings(SIGNALBOX={"OUTBOX_DATABASES": ["default", "gone"]}):
        [error] = check_settings()
    assert error.id == "signalbox.E001"
    assert "names ['gone'], which settings.DATABASES does not have" in error.msg


def test_system_check_is_quiet_when_all_is_well() -> None:
    assert check_settings() == []


@pytest.mark.parametrize(
    ("level", "warned"),
    [
        ("missing", False),  # Django's default: READ COMMITTED
        ("read committed", False),
        ("READ COMMITTED", False),
        ("repeatable read", True),
        ("serializable", True),
        (None, True),  # the server's default, REPEATABLE READ on InnoDB
    ],
)
def test_a_mysql_database_above_read_committed_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, level: str | None, warned: bool
) -> None:
    from django.conf import settings

    options = {} if level == "missing" else {"isolation_level": level}
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {}},
        "shop": {"ENGINE": "django.db.backends.mysql", "OPTIONS": options},
    }
    monkeypatch.setattr(settings, "DATABASES", databases)
    messages = check_databases()
    assert [m.id for m in messages] == (["signalbox.W002"] if warned else [])
    assert all("'shop'" in m.msg for m in messages)


def test_the_database_check_is_registered_and_quiet_for_the_suites_settings() -> None:
    assert check_databases in checks.registry.registry.get_checks()
    assert check_databases() == []
