"""Shared fixtures, and the rule for tests that need a service.

A test marked ``postgres`` needs the PostgreSQL server, one marked ``mysql``
MariaDB or MySQL: each runs only in the run on that database
(``SIGNALBOX_TEST_DB``), and one marked with both in either run. A run on a
server that does not answer is skipped locally; under CI (the ``CI``
variable is set) it fails instead, so a missing service can never pass as a
green run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal as DjangoSignal

from signalbox import _outage, dispatch
from signalbox.testing import pytest_plugin
from tests import settings as test_settings

# The kit's fixtures, for signalbox's own tests (dogfooding). An installed
# signalbox registers the plugin through its pytest11 entry point; the
# virtualenvs install it editable from one checkout, whose entry point may
# predate a worktree's, so the fixtures are taken from the source here.
# (pytest names a conftest's fixture by the attribute that holds it.)
signalbox = pytest_plugin.signalbox
_signalbox_marker = pytest_plugin._signalbox_marker

# The reliability scenarios run in a session of their own (make reliability,
# make soak), which sets SIGNALBOX_RELIABILITY and their settings module.
collect_ignore = [] if os.environ.get("SIGNALBOX_RELIABILITY") else ["reliability"]
# The release check builds the wheel and installs it in a fresh virtualenv:
# once per `make test` (the first pair's SQLite run) and in `make release-check`.
if not os.environ.get("SIGNALBOX_RELEASE"):
    collect_ignore.append("test_release.py")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# The database servers a whole run needs, by SIGNALBOX_TEST_DB.
SERVERS = {
    "postgres": ("PostgreSQL", "127.0.0.1", 5432),
    "mysql": ("MariaDB/MySQL", "127.0.0.1", 3306),
}


# Brokers the engines' integration tests talk to, by marker.
BROKERS = {"redis": ("127.0.0.1", 6379), "rabbitmq": ("127.0.0.1", 5672)}


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    answering = {name: _answers(*where) for name, where in BROKERS.items()}
    for item in items:
        # A test marked for databases runs on any of them, and only there.
        wanted = [engine for engine in SERVERS if engine in item.keywords]
        if wanted and test_settings.ENGINE not in wanted:
            runs = " or ".join(f"SIGNALBOX_TEST_DB={engine}" for engine in wanted)
            item.add_marker(pytest.mark.skip(reason=f"runs with {runs}"))
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
    server = SERVERS.get(test_settings.ENGINE)
    if server is None:
        return
    name, host, port = server
    if not _answers(host, port):
        message = f"{name} is not answering on {host}:{port}"
        if os.environ.get("CI"):
            raise pytest.UsageError(
                f"{message}, and CI needs it (start it: make services)."
            )
        pytest.exit(f"{message}; skipping the {name} run.", returncode=0)


@pytest.fixture(autouse=True)
def _no_outage_outlives_its_test() -> Iterator[None]:
    """This process's record of database outages starts empty in each test:
    an outage a test caused must not hold back another test's rescue of
    expired leases (signalbox.worker._housekeeping.rescue_expired)."""
    yield
    _outage._outages._forget_parent()


@pytest.fixture
def connect() -> Iterator[Callable[..., Any]]:
    """``signalbox.connect``, undone after the test: signals are global.

    The fixture holds each receiver for the test's duration (they are weakly
    connected closures); lifetimes are test_lifetime.py's business.
    """
    made: list[tuple[DjangoSignal, Any, dict[str, Any]]] = []

    def _connect(signal: DjangoSignal, receiver: Any, **options: Any) -> Any:
        dispatch.connect(signal, receiver, **options)
        made.append((signal, receiver, options))
        return receiver

    yield _connect
    for signal, receiver, options in reversed(made):
        signal.disconnect(
            receiver,
            sender=options.get("sender"),
            dispatch_uid=options.get("dispatch_uid"),
        )
