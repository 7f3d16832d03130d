"""Shared fixtures, and the rule for tests that need a service.

A test marked ``postgres`` needs the PostgreSQL server. Locally it is skipped
when the server does not answer; under CI (the ``CI`` variable is set) it
fails instead, so a missing service can never pass as a green run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal as DjangoSignal

import signalbox
from tests import settings as test_settings

# The reliability scenarios run in a session of their own (make reliability,
# make soak), which sets SIGNALBOX_RELIABILITY and their settings module.
collect_ignore = [] if os.environ.get("SIGNALBOX_RELIABILITY") else ["reliability"]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# Brokers the engines' integration tests talk to, by marker.
BROKERS = {"redis": ("127.0.0.1", 6379), "rabbitmq": ("127.0.0.1", 5672)}


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    answering = {name: _answers(*where) for name, where in BROKERS.items()}
    for item in items:
        if "postgres" in item.keywords and test_settings.ENGINE != "postgres":
            item.add_marker(
                pytest.mark.skip(reason="runs with SIGNALBOX_TEST_DB=postgres")
            )
        for name, (host, port) in BROKERS.items():
            if name not in item.keywords or answering[name]:
                continue
            message = f"{name} is not answering on {host}:{port}"
            if os.environ.get("CI"):
                # Under CI a missing service fails the test, never skips it.
                item.add_marker(pytest.mark.usefixtures("_missing_" + name))
            else:
                item.add_marker(pytest.mark.skip(reason=message))


@pytest.fixture
def _missing_redis() -> None:
    pytest.fail("Redis is not answering on 127.0.0.1:6379 (start it: make services)")


@pytest.fixture
def _missing_rabbitmq() -> None:
    pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672 (start it: make services)")


def pytest_sessionstart(session: pytest.Session) -> None:
    if test_settings.ENGINE == "postgres" and not _answers("127.0.0.1", 5432):
        message = "PostgreSQL is not answering on 127.0.0.1:5432"
        if os.environ.get("CI"):
            raise pytest.UsageError(
                f"{message}, and CI needs it (start it: make services)."
            )
        pytest.exit(f"{message}; skipping the PostgreSQL run.", returncode=0)


@pytest.fixture
def connect() -> Iterator[Callable[..., Any]]:
    """``signalbox.connect``, undone after the test: signals are global.

    The fixture holds each receiver for the test's duration (they are weakly
    connected closures); lifetimes are test_lifetime.py's business.
    """
    made: list[tuple[DjangoSignal, Any, dict[str, Any]]] = []

    def _connect(signal: DjangoSignal, receiver: Any, **options: Any) -> Any:
        signalbox.connect(signal, receiver, **options)
        made.append((signal, receiver, options))
        return receiver

    yield _connect
    for signal, receiver, options in reversed(made):
        signal.disconnect(
            receiver,
            sender=options.get("sender"),
            dispatch_uid=options.get("dispatch_uid"),
        )
