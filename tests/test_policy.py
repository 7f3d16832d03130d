"""Unit tests for background options and the retry curve."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from signalbox import ReceiverError
from signalbox.exceptions import Retry
from signalbox.policy import DEFAULT_ATTEMPTS, Backoff, Policy


class TestBackoff:
    def test_full_jitter_stays_under_the_exponential_ceiling(self) -> None:
        backoff = Backoff(base=timedelta(seconds=2), cap=timedelta(hours=1))
        rng = random.Random(7)
        for attempt in range(1, 25):
            ceiling = min(3600.0, 2.0 * 2 ** (attempt - 1))
            delays = [backoff.delay(attempt, rng).total_seconds() for _ in range(200)]
            assert all(0 <= delay <= ceiling for delay in delays)
            # Full jitter spreads over the whole range, not near the ceiling.
            assert min(delays) < ceiling * 0.1
            assert max(delays) > ceiling * 0.9

    def test_the_cap_holds(self) -> None:
        backoff = Backoff(base=timedelta(seconds=1), cap=timedelta(seconds=30))
        assert backoff.delay(60, random.Random(1)) <= timedelta(seconds=30)


class TestPolicy:
    def test_defaults(self) -> None:
        policy = Policy.from_options({})
        assert policy.queue == "default"
        assert policy.max_attempts == DEFAULT_ATTEMPTS == 20
        assert policy.atomic is False
        assert policy.delay is None

    def test_options(self) -> None:
        policy = Policy.from_options(
            {
                "queue": "mail",
                "priority": -1,
                "retries": 5,
                "retry_on": (ConnectionError, TimeoutError),
                "dont_retry_on": ValueError,
                "delay": timedelta(minutes=1),
                "timeout": 30,
                "atomic": True,
            }
        )
        assert policy.max_attempts == 5
        assert policy.timeout == timedelta(seconds=30)
        assert policy.dont_retry_on == (ValueError,)
        assert policy.retries(ConnectionError()) is True
        assert policy.retries(KeyError()) is False

    def test_dont_retry_on_wins(self) -> None:
        policy = Policy.from_options({"dont_retry_on": (KeyError,)})
        assert policy.retries(RuntimeError()) is True
        assert policy.retries(KeyError()) is False

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"queues": "x"}, "has no option queues"),
            ({"queue": ""}, "queue must be a non-empty string"),
            ({"retries": 0}, "retries must be an integer from 1"),
            ({"retries": True}, "retries must be an integer"),
            ({"delay": -1}, "delay must be a timedelta"),
            ({"retry_on": "oops"}, "retry_on must be an exception class"),
            ({"backoff": 3}, r"signalbox.Backoff\(base=..., cap=...\)"),
            ({"atomic": 1}, "atomic must be True or False"),
        ],
    )
    def test_bad_options_are_named(
        self, options: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ReceiverError, match=message):
            Policy.from_options(options)


def test_retry_takes_seconds_or_a_timedelta() -> None:
    assert Retry(delay=5).delay == timedelta(seconds=5)
    assert Retry(delay=timedelta(minutes=2)).delay == timedelta(minutes=2)


def test_each_forked_process_draws_its_own_jitter() -> None:
    # Celery's pool forks its processes from a parent that imported
    # signalbox: with the parent's generator state copied into each, they
    # backed off in lockstep, every retry of a burst landing together.
    import os

    children = 4
    reader, writer = os.pipe()
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child leaves with os._exit)
            code = 1
            try:
                draws = [Backoff().delay(20).total_seconds() for _ in range(3)]
                os.write(writer, (repr(draws) + "\n").encode())
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(writer)
    with os.fdopen(reader) as lines:
        draws_by_child = lines.read().splitlines()
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert len(draws_by_child) == children
    assert len(set(draws_by_child)) == children  # no two children alike
