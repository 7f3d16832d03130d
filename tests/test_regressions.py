"""Bugs found and fixed, each with the test that failed before the fix."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.test import override_settings

import signalbox


def sleepy(sender: object, **kwargs: Any) -> None:
    time.sleep(0.03)


@pytest.mark.django_db(transaction=True)
def test_a_deferred_receiver_that_runs_at_once_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The adapter timed the receiver, and the send loop then timed the adapter
    # and warned again, advising run="on_commit" to an on_commit receiver.
    signal = signalbox.Signal()
    signalbox.connect(signal, sleepy, run="on_commit")
    with (
        override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": 10}),
        caplog.at_level(logging.WARNING, logger="signalbox.observe"),
    ):
        signal.send(sender=None)
    slow = [r for r in caplog.records if "Slow signal receiver" in r.getMessage()]
    assert len(slow) == 1
    assert "test_regressions.sleepy" in slow[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_slow_on_commit_receiver_is_not_told_to_use_on_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signal = signalbox.Signal()
    signalbox.connect(signal, sleepy, run="on_commit")
    with (
        override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": 10}),
        caplog.at_level(logging.WARNING, logger="signalbox.observe"),
    ):
        signal.send(sender=None)
    [message] = [r.getMessage() for r in caplog.records]
    assert 'connect it with run="on_commit"' not in message
    assert 'run="background"' in message
