"""What a worker says it runs, and what it leaves to other engines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.translation import ngettext

from signalbox import registry
from signalbox.policy import Policy

Hint = Callable[[str, Sequence[str]], str]
"""How to start what runs engine ``alias``'s deliveries on some queues
(``Engine.worker_hint``): given by whoever knows the engines."""


def any_worker(alias: str, queues: Sequence[str]) -> str:
    """The :data:`Hint` that knows no engine: names it only."""
    return f"a worker of engine {alias!r}"


def describe(
    *,
    name: str,
    receivers: dict[str, list[registry.Found]],
    engines: Sequence[str],
    queues: Sequence[str],
    concurrency: int,
    hint: Hint,
) -> list[str]:
    """The lines a worker logs first: which of ``receivers`` it runs (those
    of ``engines``, on ``queues``) and, per other engine, how many it leaves
    to that engine with how to run them (``hint``)."""
    keys, queues_of = _by_engine(receivers)
    mine = {key for alias in engines for key in keys.get(alias, ())}
    lines = [
        f"Worker {name} runs {count_receivers(len(mine))} of engine "
        f"{', '.join(map(repr, engines))} on queues "
        f"{','.join(queues)}, {concurrency} at a time."
        if engines
        else f"Worker {name} runs no receivers: no engine in "
        f"SIGNALBOX['ENGINES'] is the embedded worker."
    ]
    for alias in sorted(keys.keys() - set(engines)):
        count = len(keys[alias])
        handed = ngettext(
            "%s is handed to engine %r, not run by this worker",
            "%s are handed to engine %r, not run by this worker",
            count,
        ) % (count_receivers(count), alias)
        lines.append(
            f"{handed}: start {hint(alias, sorted(queues_of[alias]))}, and "
            f"`manage.py signalbox relay` for their retries and delays."
        )
    return lines


def count_receivers(count: int) -> str:
    """ "1 receiver", "2 receivers"."""
    return ngettext("%d receiver", "%d receivers", count) % count


def _by_engine(
    receivers: dict[str, list[registry.Found]],
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The receiver keys, and the queues they name, of each engine alias."""
    keys: dict[str, set[str]] = {}
    queues: dict[str, set[str]] = {}
    for key, found in receivers.items():
        for each in found:
            policy = each.info.policy or Policy()
            keys.setdefault(policy.engine, set()).add(key)
            queues.setdefault(policy.engine, set()).add(policy.queue)
    return keys, queues
