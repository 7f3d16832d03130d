"""The Celery engine while its RabbitMQ crashes and comes back, under load.

A private RabbitMQ node (port 5673, its own data folder) is started here,
killed with SIGKILL while Celery workers are busy and sends go on, and
started again on the same data. The shared broker on 5672 is never touched.
The test prints one JSON line of figures (``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.engines import _handoff
from signalbox.models import Delivery
from tests.test_engine_celery import CeleryWorkers, notes, send, wait_for
from tests.test_engine_celery_faults import (
    all_completed,
    ran_once_each,
    relay_until,
    report,
    workers_on,
)
from tests.testapp.celery_app import PRIVATE_RABBITMQ_PORT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rabbitmq,
    pytest.mark.postgres,
]

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateRabbitMQ:
    """A RabbitMQ node of its own on loopback, which the test can crash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{PRIVATE_RABBITMQ_PORT}\n"
        )
        (folder / "enabled_plugins").write_text("[].\n")

    def start(self) -> float:
        """Start the node on its data folder; return how long it took."""
        started = time.monotonic()
        self.launch()
        wait_for(self.answers, timeout=60)
        return time.monotonic() - started

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the node's processes, without waiting for it to answer."""
        environment = {
            **os.environ,
            "HOME": str(self.folder),  # its own Erlang cookie
            "RABBITMQ_NODENAME": "sbtest-private@localhost",
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the system node's
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_DIST_PORT": str(PRIVATE_RABBITMQ_PORT + 20000),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # A node that fails to boot writes erl_crash.dump: into its own
            # folder, never into the checkout the tests run from.
            "ERL_CRASH_DUMP": str(self.folder / "erl_crash.dump"),
            # Erlang distribution on loopback too, not every interface.
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        with (self.folder / "node.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(SERVER)],
                env=environment,
                stdout=log,
                stderr=log,
                cwd=self.folder,
                start_new_session=True,  # one process group: the node and its helpers
            )
        return self.process

    def crash(self) -> None:
        """SIGKILL the whole node, as a power cut would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_for(lambda: not self.answers(), timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.crash()

    @staticmethod
    def answers() -> bool:
        try:
            socket.create_connection(
                ("127.0.0.1", PRIVATE_RABBITMQ_PORT), timeout=0.5
            ).close()
        except OSError:
            return False
        return True


def _need_a_rabbitmq_installation() -> None:
    if not SERVER.exists() or shutil.which("erl") is None:
        message = "needs a RabbitMQ server installation to run a private node"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI needs it (install rabbitmq-server)")
        pytest.skip(message)


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[PrivateRabbitMQ]:
    _need_a_rabbitmq_installation()
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def workers(rabbitmq: PrivateRabbitMQ, tmp_path: Path) -> Iterator[CeleryWorkers]:
    # REDELIVER_SECONDS 3: what the crash took from the broker is handed over
    # again by the relay 3 s after its first hand-over.
    yield from workers_on("private_amqp_app", tmp_path, redeliver=3)


def test_a_node_that_fails_to_boot_leaves_its_crash_dump_in_its_own_folder(
    tmp_path: Path,
) -> None:
    # A run once committed the erl_crash.dump such a node wrote into the
    # checkout the tests ran from. Its distribution port taken, it cannot boot.
    _need_a_rabbitmq_installation()
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", PRIVATE_RABBITMQ_PORT + 20000))
        taken.listen()
        try:
            node.launch().wait(timeout=60)
        finally:
            node.stop()
    assert (node.folder / "erl_crash.dump").exists()


def test_rabbitmq_crashed_and_restarted_under_load(
    rabbitmq: PrivateRabbitMQ, workers: CeleryWorkers
) -> None:
    workers.start()
    workers.start()
    latencies: dict[str, list[float]] = {"busy": [], "down": [], "back": []}
    errors = 0

    def send_many(phase: str, count: int, seconds: float = 0) -> None:
        nonlocal errors
        for _ in range(count):
            started = time.perf_counter()
            try:
                send(phase, seconds=seconds)
            except Exception:
                errors += 1
            latencies[phase].append(time.perf_counter() - started)

    # Load: 40 deliveries of 50 ms for 2 workers; the crash comes while some
    # run, some wait in the broker and some are still being handed over.
    send_many("busy", 40, seconds=0.05)
    wait_for(lambda: len(notes("end")) >= 5)
    rabbitmq.crash()
    ended_at_crash = len(notes("end"))
    send_many("down", 20)
    restart_s = rabbitmq.start()
    back = time.monotonic()
    send_many("back", 20)
    _handoff.flush(10)
    relay_until(lambda: all_completed(80), timeout=90)
    drain_s = time.monotonic() - back
    twice, ends = ran_once_each()
    report(
        "rabbitmq crashed (SIGKILL) and restarted under load",
        sends=80,
        ended_before_crash=ended_at_crash,
        errors_raised_to_callers=errors,
        send_ms_median={
            k: round(statistics.median(v) * 1000, 2) for k, v in latencies.items()
        },
        send_ms_max={k: round(max(v) * 1000, 2) for k, v in latencies.items()},
        restart_s=round(restart_s, 1),
        drain_after_restart_s=round(drain_s, 1),
        handovers_max=max(Delivery.objects.values_list("handovers", flat=True)),
        lost=80 - ends,
        ran_twice=twice,
    )
    assert errors == 0
    assert (ends, twice) == (80, 0)
    assert statistics.median(latencies["down"]) < 5 * max(
        statistics.median(latencies["busy"]), 0.005
    )
