"""Fixtures of the reliability scenarios: the private cluster, the SQLite file, workers.

The scenarios run only in their own pytest session (``make reliability``,
``make soak``), with ``--ds=tests.reliability.settings``. Locally a machine
without PostgreSQL's binaries skips them; under CI it fails, like every
suite that needs a service.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from tests.reliability import cluster as private
from tests.reliability import harness, report


@pytest.fixture(scope="session")
def _unblocked(django_db_blocker: object) -> Iterator[None]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        yield


@pytest.fixture(scope="session")
def cluster(_unblocked: None) -> Iterator[private.Cluster]:
    """The private PostgreSQL cluster, with the outbox and the harness's tables."""
    why = private.available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"The private PostgreSQL cluster cannot run: {why}.")
        pytest.skip(why)
    database = settings.DATABASES["default"]
    server = private.Cluster(int(database["PORT"]))
    server.create()
    server.start()
    try:
        server.psql(f"CREATE DATABASE {database['NAME']}")
        harness.prepare("default")
        yield server
    finally:
        connections.close_all()
        server.destroy()


@pytest.fixture(scope="session")
def _sqlite_file(_unblocked: None) -> Iterator[Path]:
    path = Path(settings.DATABASES["sqlite"]["NAME"])
    harness.prepare("sqlite")
    yield path
    connections["sqlite"].close()
    for leftover in path.parent.glob(f"{path.name}*"):
        leftover.unlink()


@pytest.fixture
def pg(cluster: private.Cluster, tmp_path: Path) -> Iterator[harness.Workers]:
    """Workers on the private cluster, its outbox emptied; stopped afterwards."""
    if not cluster.running():
        cluster.start()
    harness.reset("default")
    workers = harness.Workers("default", tmp_path)
    try:
        yield workers
    finally:
        workers.stop()
        connections.close_all()


@pytest.fixture
def lite(_sqlite_file: Path, tmp_path: Path) -> Iterator[harness.Workers]:
    """Workers on the SQLite file, its outbox emptied; stopped afterwards."""
    harness.reset("sqlite")
    workers = harness.Workers("sqlite", tmp_path)
    try:
        yield workers
    finally:
        workers.stop()
        connections.close_all()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int
) -> None:
    if not harness.RESULTS:
        return
    terminalreporter.section("reliability figures (one JSON line per scenario)")
    for result in harness.RESULTS:
        terminalreporter.write_line(report.json_line(result))
    target = os.environ.get("SIGNALBOX_RELIABILITY_REPORT")
    if target:
        written = report.write(Path(target), harness.RESULTS)
        terminalreporter.write_line(f"report written to {written}")
        docs = os.environ.get("SIGNALBOX_RELIABILITY_DOCS")
        if docs and exitstatus == 0:  # the docs show a run that passed
            report.refresh_docs(Path(docs), written, harness.RESULTS)
            terminalreporter.write_line(f"table refreshed in {docs}")
