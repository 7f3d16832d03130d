"""Tripwires in a worker process: record every call a row must never cause.

With ``SIGNALBOX_REL_TRIPWIRES`` naming a folder, a worker appends one line
per event to ``<folder>/<pid>.log``: the audit events of spawning a process,
running a shell command or unpickling a class; any ``eval``/``exec`` of
source text and any import whose name came from a fuzzed or malicious row
(they carry ``sbfuzz`` or name the trap module); and calls of
``pickle.loads``, ``importlib.import_module`` and ``eval`` made from
signalbox's own code. The harness reads the files after a scenario.
"""

from __future__ import annotations

import builtins
import importlib
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKERS = ("sbfuzz", "tests.reliability.trap")
ALWAYS = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn"}
ALWAYS |= {"pickle.find_class"}

_log: Path | None = None


def install() -> None:
    global _log
    folder = os.environ.get("SIGNALBOX_REL_TRIPWIRES")
    if not folder or _log is not None:
        return
    _log = Path(folder) / f"{os.getpid()}.log"
    _log.parent.mkdir(parents=True, exist_ok=True)
    _log.touch()
    sys.addaudithook(_audit)
    pickle.loads = _from_signalbox("pickle.loads", pickle.loads)  # type: ignore[assignment]
    pickle.load = _from_signalbox("pickle.load", pickle.load)  # type: ignore[assignment]
    importlib.import_module = _from_signalbox(  # type: ignore[assignment]
        "import_module", importlib.import_module
    )
    builtins.eval = _from_signalbox("eval", builtins.eval)


def _write(line: str) -> None:
    if _log is not None:
        with _log.open("a") as out:
            out.write(line.replace("\n", " ")[:300] + "\n")


def _marked(value: object) -> bool:
    return any(marker in str(value) for marker in MARKERS)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in ALWAYS or (event in ("import", "compile", "exec") and _marked(args)):
        _write(f"{event} {args!r}")


def _from_signalbox(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def tripwire(*args: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        while frame is not None:
            if str(frame.f_globals.get("__name__", "")).startswith("signalbox"):
                _write(f"{name} from {frame.f_globals['__name__']} {args!r}")
                break
            frame = frame.f_back  # type: ignore[assignment]
        return real(*args, **kwargs)

    return tripwire


def events(folder: Path) -> list[str]:
    """Every line the workers wrote under ``folder``."""
    return [
        line
        for log in sorted(folder.glob("*.log"))
        for line in log.read_text().splitlines()
    ]
