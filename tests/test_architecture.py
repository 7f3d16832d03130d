"""The package's shape: imports flow one way.

Each module belongs to a layer; a module may import from its own layer or
lower ones, never higher. A new module must be given a layer here, which is
the moment to decide where it belongs. (What the package may never import or
call, pickle or eval say, is test_security.py's business; it reads the
package with :func:`modules` and :func:`imported` from here.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "signalbox"

LAYERS: dict[str, int] = {
    "signalbox.exceptions": 0,
    "signalbox._compat": 0,
    "signalbox._refs": 0,
    "signalbox._states": 0,
    "signalbox._context": 0,
    "signalbox._connections": 0,
    "signalbox._forks": 0,
    "signalbox.conf": 1,
    "signalbox.outbox._statements": 2,
    "signalbox.outbox._libpq": 2,
    "signalbox.policy": 1,
    "signalbox._travel": 1,
    "signalbox.registry": 1,
    "signalbox.codec": 1,
    "signalbox.codec._base": 1,
    "signalbox.codec._registry": 1,
    "signalbox.codec._scalars": 1,
    "signalbox.codec._encoding": 1,
    "signalbox.codec._decoding": 1,
    "signalbox.models": 1,
    "signalbox.observe": 2,
    "signalbox.outbox": 2,
    "signalbox.outbox._base": 2,
    "signalbox.outbox._writing": 2,
    "signalbox.outbox._leases": 2,
    "signalbox.outbox._claim_mysql": 2,
    "signalbox.outbox._housekeeping": 2,
    "signalbox.outbox._liveness": 2,
    "signalbox.outbox._handover": 2,
    "signalbox.outbox._waiting": 2,
    "signalbox.engines": 2,
    "signalbox.engines._handoff": 2,
    "signalbox.engines._clients": 2,
    "signalbox.engines.embedded": 2,
    "signalbox.engines.remote": 5,
    "signalbox.engines.relay": 5,
    "signalbox.engines.django_q": 5,
    "signalbox.engines.dramatiq": 5,
    "signalbox.engines.rq": 5,
    "signalbox.engines.tasks": 5,
    "signalbox.engines.threads": 5,
    "signalbox.engines.celery": 5,
    "signalbox._adapters": 3,
    "signalbox._modes": 3,
    "signalbox.dispatch": 4,
    "signalbox.worker": 4,
    "signalbox.worker._run": 4,
    "signalbox.worker._listen": 4,
    "signalbox.worker._acks": 4,
    "signalbox.worker._commits": 4,
    "signalbox.worker._describe": 4,
    "signalbox.worker._embedded": 4,
    "signalbox.worker._heartbeat": 4,
    "signalbox.worker._housekeeping": 4,
    "signalbox.worker._in_transaction": 4,
    "signalbox.worker._keeper": 4,
    "signalbox.worker._leases": 4,
    "signalbox.worker._names": 4,
    "signalbox.worker._pace": 4,
    "signalbox.worker._stopping": 4,
    "signalbox.worker._tasks": 4,
    "signalbox.observe.status": 5,
    "signalbox.migrations": 5,
    "signalbox.migrations.0001_initial": 5,
    "signalbox.migrations.0002_delivery_payload_erased_at_permissions": 5,
    "signalbox.migrations.0003_delivery_engine": 5,
    "signalbox.migrations.0004_delivery_waiting_mysql": 5,
    "signalbox.migrations.0005_delivery_interrupted_worker_liveness": 5,
    "signalbox.observe.inventory": 5,
    "signalbox.checks": 5,
    "signalbox.apps": 5,
    "signalbox.admin": 5,
    "signalbox.management": 5,
    "signalbox.management.commands": 5,
    "signalbox.management.commands.signalbox": 5,
    "signalbox": 6,
}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(name: str) -> int | None:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_has_a_layer(module: str) -> None:
    assert module in LAYERS, f"{module} needs a layer in tests/test_architecture.py"


@pytest.mark.parametrize(("module", "tree"), sorted(modules().items()))
def test_imports_flow_downwards(module: str, tree: ast.Module) -> None:
    own = LAYERS[module]
    upward = sorted(
        name
        for name in imported(tree)
        if name.startswith("signalbox") and (layer_of(name) or 0) > own
    )
    assert upward == [], f"{module} (layer {own}) imports higher layers: {upward}"
