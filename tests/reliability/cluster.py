"""A private PostgreSQL cluster that fault scenarios may crash at will.

The shared server on 127.0.0.1:5432 runs other suites' tests; nothing here
ever touches it. :class:`Cluster` initialises a throw-away data directory,
runs PostgreSQL 15's own binaries as the ``postgres`` user (we run as root,
and PostgreSQL refuses root) on a loopback port of its own, with trust
authentication, and can crash it (``stop -m immediate``) and bring it back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("SIGNALBOX_REL_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ClusterError(RuntimeError):
    """The private cluster could not be set up, started or stopped."""


def available() -> str | None:
    """Why a private cluster cannot be run here, or None if it can."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {BIN} (set SIGNALBOX_REL_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser to start PostgreSQL as postgres"
    return None


class Cluster:
    """One PostgreSQL cluster in a temporary directory, on 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="signalbox-rel-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.restarts: list[float] = []

    # -- running PostgreSQL's binaries as postgres ----------------------------

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise ClusterError(
                f"{' '.join(argv)} failed ({done.returncode}): "
                f"{done.stdout}{done.stderr}{self._log_tail()}"
            )
        return done

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-20:])
        except OSError:
            return ""

    # -- life cycle -----------------------------------------------------------

    def create(self) -> None:
        """initdb into the temporary directory; trust auth, loopback only."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "shared_buffers": "128MB",
            # Crash recovery is what the scenarios exercise: keep it short.
            "checkpoint_timeout": "30s",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint, every backend killed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def crash_restart(self) -> float:
        """Crash and start again (recovery included); returns the seconds it took."""
        began = time.monotonic()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            "immediate",
            "-w",
            "restart",
        )
        took = time.monotonic() - began
        self.restarts.append(took)
        return took

    def running(self) -> bool:
        return (
            self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode
            == 0
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ).stdout

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
