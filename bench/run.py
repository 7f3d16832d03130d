"""signalbox's dispatch against ``django.dispatch.Signal``, send for send.

Run it from the repository root::

    make bench                                  # or, without make:
    .venvs/py311-dj52/bin/python bench/run.py   # --help for the options

Each case builds two signals with the very same receivers, one
``django.dispatch.Signal`` and one ``signalbox.Signal`` (receiver timing on, as
always), and times a block of sends of each in turn, many short rounds in a
row, alternating which goes first. Within a round both blocks see much the
same machine, so their ratio is far steadier than either time alone.

How to read the figures:

* **ratio** is signalbox's time per send divided by Django's, the median over
  all rounds: 0.80 means signalbox takes 80% of Django's time, so lower is
  better and <= 1.00 means signalbox is not slower. The IQR column gives the
  middle half of the per-round ratios; a wide one means the machine was busy.
* **min** and **median** are absolute times per send (receivers included);
  min is the least disturbed round and the best figure to compare between
  runs, median is the typical one.
* **result** is PASS when the ratio meets the case's target: <= 1.00 for
  every case, and <= 0.50 for ``asend`` to a single coroutine receiver, which
  signalbox awaits directly where Django gathers tasks.

Two more cases time connecting 2,000 receivers to one signal, then
disconnecting them in a shuffled order (a project that registers a receiver
per model pays this at every start), as a ratio against Django's own connect
and disconnect measured in the same rounds; their target is <= 1.50.

The receivers do nothing, so the figures are the dispatch overhead alone, the
harshest comparison for signalbox; real receivers only bring ratios closer to
1.00. The results are also written to ``bench/results/dispatch-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import django
from django.conf import settings
from django.dispatch import Signal as DjangoSignal

# Always measure this checkout's signalbox, whatever the virtualenv holds.
SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

import signalbox  # noqa: E402

Method = Literal["send", "send_robust", "asend"]
Receiver = Callable[..., Any]
Block = Callable[[int], int]
"""Runs a number of sends and returns how long they took, in nanoseconds."""

RESULTS = Path(__file__).resolve().parent / "results" / "dispatch-latest.json"
SLOW_RECEIVER_MS = 250  # signalbox's default: every call is timed, none warns


# -- what is sent, and to whom ------------------------------------------------


class Sender:
    """The sender of every send, and the filter of sender-specific receivers."""


class OtherSender:
    """A sender nothing is sent from: its receivers must not be reached."""


INSTANCE = object()  # one keyword argument, as model signals carry `instance`


def _sync_receiver(index: int) -> Receiver:
    def receiver(sender: object, **kwargs: object) -> None:
        return None

    receiver.__name__ = receiver.__qualname__ = f"sync_receiver_{index}"
    return receiver


def _async_receiver(index: int) -> Receiver:
    async def receiver(sender: object, **kwargs: object) -> None:
        return None

    receiver.__name__ = receiver.__qualname__ = f"async_receiver_{index}"
    return receiver


# Distinct functions (Django connects a function only once per sender), kept
# alive here because both signals hold them weakly. Each one is connected to
# both signals of a case, so both run exactly the same receiver code.
SYNC_RECEIVERS = tuple(_sync_receiver(index) for index in range(10))
ASYNC_RECEIVERS = tuple(_async_receiver(index) for index in range(10))


@dataclass(frozen=True)
class Case:
    """One way of sending, measured on a Django and a signalbox signal."""

    key: str
    title: str
    method: Method
    receivers: tuple[Receiver, ...]
    connected_to: type | None  # the `sender=` of every connect
    target: float = 1.0  # the ratio signalbox must not exceed

    def build(self, signal_class: type[DjangoSignal]) -> DjangoSignal:
        """A new signal of ``signal_class`` with this case's receivers."""
        signal = signal_class()
        for receiver in self.receivers:
            signal.connect(receiver, sender=self.connected_to)
        return signal


CASES = (
    # Nothing connected at all: both return before looking for receivers.
    Case("send-0-any", "send, 0 receivers, any sender", "send", (), None),
    # Receivers for another sender only: the send finds that none apply.
    Case(
        "send-0-sender",
        "send, 0 receivers, sender-specific",
        "send",
        SYNC_RECEIVERS[:1],
        OtherSender,
    ),
    Case(
        "send-1-any",
        "send, 1 receiver, any sender",
        "send",
        SYNC_RECEIVERS[:1],
        None,
    ),
    Case(
        "send-1-sender",
        "send, 1 receiver, sender-specific",
        "send",
        SYNC_RECEIVERS[:1],
        Sender,
    ),
    Case(
        "send-10-any",
        "send, 10 receivers, any sender",
        "send",
        SYNC_RECEIVERS,
        None,
    ),
    Case(
        "send-10-sender",
        "send, 10 receivers, sender-specific",
        "send",
        SYNC_RECEIVERS,
        Sender,
    ),
    Case(
        "send_robust-1",
        "send_robust, 1 receiver",
        "send_robust",
        SYNC_RECEIVERS[:1],
        Sender,
    ),
    Case(
        "send_robust-10",
        "send_robust, 10 receivers",
        "send_robust",
        SYNC_RECEIVERS,
        Sender,
    ),
    Case(
        "asend-1-async",
        "asend, 1 coroutine receiver",
        "asend",
        ASYNC_RECEIVERS[:1],
        Sender,
        target=0.5,
    ),
    Case(
        "asend-10-async",
        "asend, 10 coroutine receivers",
        "asend",
        ASYNC_RECEIVERS,
        Sender,
    ),
    Case(
        "asend-1-sync",
        "asend, 1 sync receiver",
        "asend",
        SYNC_RECEIVERS[:1],
        Sender,
    ),
)


CONNECTED = 2_000  # receivers connected, then disconnected, per round
CONNECT_ROUNDS = 15
CONNECT_TARGET = 1.5
# Distinct functions, kept alive here: each signal holds them weakly.
MANY_RECEIVERS = tuple(_sync_receiver(index) for index in range(CONNECTED))
# Disconnected in one shuffled order, the same for both classes: Django looks
# a receiver up from the start of its list, so in connection order it would
# time one comparison per disconnect, in reverse order the whole list.
SHUFFLED_RECEIVERS = tuple(random.Random(13).sample(MANY_RECEIVERS, CONNECTED))


# -- timing blocks of sends ---------------------------------------------------


def sync_block(signal: DjangoSignal, method: Method) -> Block:
    """Time ``loops`` calls of ``signal.send`` or ``signal.send_robust``."""
    send = getattr(signal, method)

    def block(loops: int) -> int:
        repeat = itertools.repeat(None, loops)
        start = time.perf_counter_ns()
        for _ in repeat:
            send(Sender, instance=INSTANCE)
        return time.perf_counter_ns() - start

    return block


def async_block(signal: DjangoSignal, runner: asyncio.Runner) -> Block:
    """Time ``loops`` awaits of ``signal.asend``, inside one long-lived loop.

    The clock runs inside the coroutine, so neither the loop nor the task that
    ``runner.run`` starts for each block is measured.
    """
    asend = signal.asend

    async def sends(loops: int) -> int:
        repeat = itertools.repeat(None, loops)
        start = time.perf_counter_ns()
        for _ in repeat:
            await asend(Sender, instance=INSTANCE)
        return time.perf_counter_ns() - start

    def block(loops: int) -> int:
        return runner.run(sends(loops))

    return block


def calibrate(block: Block, block_ns: int) -> int:
    """How many sends make one block last about ``block_ns``."""
    loops = 1
    while True:
        elapsed = block(loops)
        if elapsed >= block_ns // 10 or loops >= 1 << 24:
            return max(1, loops * block_ns // max(elapsed, 1))
        loops *= 4


def timed_without_gc(block: Block, loops: int) -> int:
    """Run ``block`` with the cyclic garbage collector paused, as timeit does."""
    gc.disable()
    try:
        return block(loops)
    finally:
        gc.enable()


# -- measuring and judging a case ----------------------------------------------


@dataclass(frozen=True)
class Result:
    """One case's figures: nanoseconds per send, and signalbox / Django."""

    key: str
    title: str
    loops: int
    rounds: int
    django_min_ns: float
    django_median_ns: float
    signalbox_min_ns: float
    signalbox_median_ns: float
    ratio: float  # median of the per-round ratios
    ratio_q1: float
    ratio_q3: float
    target: float
    passed: bool


def measure_pair(
    django_block: Block, signalbox_block: Block, loops: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Per-send times of each block over ``rounds`` alternating rounds."""
    django_times: list[float] = []
    signalbox_times: list[float] = []
    for round_number in range(rounds):
        if round_number % 2:
            signalbox_ns = timed_without_gc(signalbox_block, loops)
            django_ns = timed_without_gc(django_block, loops)
        else:
            django_ns = timed_without_gc(django_block, loops)
            signalbox_ns = timed_without_gc(signalbox_block, loops)
        django_times.append(django_ns / loops)
        signalbox_times.append(signalbox_ns / loops)
    return django_times, signalbox_times


def judge(
    case: Case, loops: int, django_times: list[float], signalbox_times: list[float]
) -> Result:
    """Summarise the rounds of ``case`` and compare the ratio with its target."""
    ratios = [sb / dj for sb, dj in zip(signalbox_times, django_times, strict=True)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Result(
        key=case.key,
        title=case.title,
        loops=loops,
        rounds=len(ratios),
        django_min_ns=min(django_times),
        django_median_ns=statistics.median(django_times),
        signalbox_min_ns=min(signalbox_times),
        signalbox_median_ns=statistics.median(signalbox_times),
        ratio=median,
        ratio_q1=q1,
        ratio_q3=q3,
        target=case.target,
        passed=median <= case.target,
    )


def run_case(case: Case, rounds: int, block_ns: int, warmup: int) -> Result:
    """Build both signals for ``case`` and measure them, asend in one loop."""
    django_signal = case.build(DjangoSignal)
    signalbox_signal = case.build(signalbox.Signal)
    if case.method != "asend":
        django_block = sync_block(django_signal, case.method)
        signalbox_block = sync_block(signalbox_signal, case.method)
        return measure_case(
            case, django_block, signalbox_block, rounds, block_ns, warmup
        )
    with asyncio.Runner() as runner:
        django_block = async_block(django_signal, runner)
        signalbox_block = async_block(signalbox_signal, runner)
        return measure_case(
            case, django_block, signalbox_block, rounds, block_ns, warmup
        )


def measure_case(
    case: Case,
    django_block: Block,
    signalbox_block: Block,
    rounds: int,
    block_ns: int,
    warmup: int,
) -> Result:
    """Size the blocks on Django's, warm both up, then time the rounds."""
    loops = calibrate(django_block, block_ns)
    gc.collect()
    measure_pair(django_block, signalbox_block, loops, warmup)
    django_times, signalbox_times = measure_pair(
        django_block, signalbox_block, loops, rounds
    )
    return judge(case, loops, django_times, signalbox_times)


# -- connecting and disconnecting ---------------------------------------------


def connect_and_disconnect(signal_class: type[DjangoSignal]) -> tuple[int, int]:
    """Nanoseconds to connect ``CONNECTED`` receivers to a new signal of
    ``signal_class``, and to disconnect them all again."""
    signal = signal_class()
    connect, disconnect = signal.connect, signal.disconnect
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for receiver in MANY_RECEIVERS:
            connect(receiver)
        connected = time.perf_counter_ns()
        for receiver in SHUFFLED_RECEIVERS:
            disconnect(receiver)
        done = time.perf_counter_ns()
    finally:
        gc.enable()
    assert not signal.receivers
    return connected - start, done - connected


def run_connect_cases(rounds: int) -> list[Result]:
    """Connect and disconnect on both classes, alternating which goes first."""
    times: dict[str, dict[type[DjangoSignal], list[float]]] = {
        "connect": {DjangoSignal: [], signalbox.Signal: []},
        "disconnect": {DjangoSignal: [], signalbox.Signal: []},
    }
    classes: list[type[DjangoSignal]] = [DjangoSignal, signalbox.Signal]
    connect_and_disconnect(DjangoSignal)  # warm up
    connect_and_disconnect(signalbox.Signal)
    for round_number in range(rounds):
        for signal_class in classes[:: -1 if round_number % 2 else 1]:
            connecting, disconnecting = connect_and_disconnect(signal_class)
            times["connect"][signal_class].append(connecting / CONNECTED)
            times["disconnect"][signal_class].append(disconnecting / CONNECTED)
        gc.collect()
    results = []
    for method, by_class in times.items():
        case = Case(
            f"{method}-{CONNECTED}",
            f"{method} {CONNECTED:,} receivers (per receiver)",
            "send",
            (),
            None,
            target=CONNECT_TARGET,
        )
        results.append(
            judge(case, 1, by_class[DjangoSignal], by_class[signalbox.Signal])
        )
    return results


# -- reporting ----------------------------------------------------------------


def duration(ns: float) -> str:
    """``ns`` in the unit that keeps it readable: ns, µs or ms."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns / 1_000_000:.2f} ms"


def markdown_table(results: Sequence[Result]) -> str:
    """The results as a Markdown table, one row per case."""
    lines = [
        "| case | Django min | signalbox min | Django median | signalbox median "
        "| ratio | IQR | target | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for r in results:
        lines.append(
            f"| {r.title} | {duration(r.django_min_ns)} "
            f"| {duration(r.signalbox_min_ns)} | {duration(r.django_median_ns)} "
            f"| {duration(r.signalbox_median_ns)} | **{r.ratio:.2f}** "
            f"| {r.ratio_q1:.2f}-{r.ratio_q3:.2f} | <= {r.target:.2f} "
            f"| {'PASS' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """What the figures depend on, for the JSON file and the header."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "django": django.get_version(),
        "signalbox": _signalbox_version(),
        "signalbox_path": str(Path(signalbox.__file__).parent),
        "machine": f"{platform.system()} {platform.machine()}",
    }


def _signalbox_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signalbox")
    except PackageNotFoundError:
        return "unknown"


def write_json(
    path: Path, results: Sequence[Result], options: argparse.Namespace
) -> None:
    """Write the results and their conditions to ``path`` (parents created)."""
    document = {
        "benchmark": "signalbox.Signal / django.dispatch.Signal, time per send",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": {
            "rounds": options.rounds,
            "warmup_rounds": options.warmup,
            "block_ms": options.block_ms,
            "SLOW_RECEIVER_MS": SLOW_RECEIVER_MS,
        },
        "passed": all(r.passed for r in results),
        "cases": [_rounded(asdict(r)) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    """Ratios to 3 decimals and times to 0.1 ns: more digits would be noise."""
    return {
        name: round(value, 1 if name.endswith("_ns") else 3)
        if isinstance(value, float)
        else value
        for name, value in figures.items()
    }


# -- the command --------------------------------------------------------------


def configure_django() -> None:
    """The least Django that signalbox needs: settings in-process, then setup."""
    settings.configure(
        INSTALLED_APPS=["signalbox"],
        SIGNALBOX={"SLOW_RECEIVER_MS": SLOW_RECEIVER_MS},
    )
    django.setup()


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=51, help="default: 51")
    parser.add_argument("--warmup", type=int, default=3, help="default: 3 rounds")
    parser.add_argument(
        "--block-ms", type=float, default=20.0, help="one block of sends (20)"
    )
    parser.add_argument(
        "--only", default="", help="run only cases whose key contains this"
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--check", action="store_true", help="exit with 1 if any case fails"
    )
    options = parser.parse_args(argv)
    if options.rounds < 2:
        parser.error("--rounds must be at least 2")
    return options


def main(argv: Sequence[str]) -> int:
    options = parse_options(argv)
    configure_django()
    env = environment()
    print(
        f"signalbox {env['signalbox']} vs Django {env['django']} on "
        f"{env['implementation']} {env['python']}: {options.rounds} rounds of "
        f"{options.block_ms:g} ms blocks per case, signalbox timing every receiver"
    )
    block_ns = int(options.block_ms * 1_000_000)
    results = []
    for case in CASES:
        if options.only not in case.key:
            continue
        result = run_case(case, options.rounds, block_ns, options.warmup)
        print(f"  {case.title:<40} ratio {result.ratio:.2f}", flush=True)
        results.append(result)
    if options.only in "connect-disconnect":
        for result in run_connect_cases(CONNECT_ROUNDS):
            print(f"  {result.title:<40} ratio {result.ratio:.2f}", flush=True)
            results.append(result)
    print()
    print(markdown_table(results))
    print()
    failed = [r.key for r in results if not r.passed]
    print(f"FAIL: {', '.join(failed)}" if failed else "PASS: every case met its target")
    write_json(options.json, results, options)
    print(f"Results written to {options.json}")
    return 1 if failed and options.check else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
