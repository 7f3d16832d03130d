"""``signalbox health`` and :mod:`signalbox.contrib.health`, on real rows and
real worker records: each check passes on a healthy outbox and fails when its
threshold is crossed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from signalbox import conf, health, outbox
from signalbox._states import State
from signalbox.exceptions import ConfigurationError
from signalbox.models import Delivery, WorkerRecord

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "t" * 40
URL = "/signalbox/health/"
BROKER = {
    "ENGINES": {
        "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
        "broker": {"BACKEND": "tests.testapp.engines.RecordingEngine"},
    },
    "HANDOVER_GRACE_SECONDS": 0,
}


@pytest.fixture(autouse=True)
def with_token() -> Iterator[None]:
    with override_settings(SIGNALBOX={"HEALTH_TOKEN": TOKEN}):
        yield


def add(queue: str = "default", engine: str = "default", **fields: Any) -> Delivery:
    """A row, written as a send writes it, then given ``fields``."""
    [pk] = outbox.enqueue(
        [
            outbox.NewDelivery(
                signal="s", receiver="shop.mail", payload={}, queue=queue, engine=engine
            )
        ],
        using="default",
        ids=True,
    )
    Delivery.objects.filter(pk=pk).update(**fields)
    return Delivery.objects.get(pk=pk)


def worker(*queues: str, seen: timedelta = timedelta(0)) -> None:
    """The record of an embedded worker consuming ``queues``, last seen ``seen`` ago."""
    name = f"worker-{'-'.join(queues)}"
    outbox.heartbeat(name, list(queues), [], using="default")
    WorkerRecord.objects.filter(name=name).update(seen_at=outbox.ago(seen))


def checks(**limits: Any) -> dict[str, dict[str, Any]]:
    verdict = health.check(
        using="default", limits=health.Limits.from_settings(**limits)
    )
    return {check["name"]: check for check in verdict.as_dict()["checks"]}


def failed(**limits: Any) -> list[str]:
    return [name for name, check in checks(**limits).items() if not check["ok"]]


def run(*args: str) -> tuple[str, int]:
    """``signalbox health ARGS``: what it printed, and its exit status."""
    out = StringIO()
    try:
        call_command("signalbox", "health", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error.returncode
    return out.getvalue(), 0


# The checks


def test_an_empty_project_is_healthy() -> None:
    verdict = health.check(using="default")
    assert verdict.healthy
    assert verdict.as_dict() == {
        "healthy": True,
        "checks": [
            {"name": "oldest_due", "ok": True, "value": 0, "limit": 300,
             "unit": "s", "queues": []},
            {"name": "dead", "ok": True, "value": 0, "limit": 0,
             "unit": "dead in 3600 s", "queues": []},
            {"name": "workers", "ok": True, "value": 0, "limit": 0,
             "unit": "queues without a live worker", "queues": []},
            {"name": "engines", "ok": True, "value": 0, "limit": 0,
             "unit": "queues not consumed", "queues": []},
            {"name": "relay", "ok": True, "value": 0, "limit": 0,
             "unit": "due without a relay", "queues": []},
        ],
    }  # fmt: skip


def test_rows_consumed_in_time_are_healthy() -> None:
    worker("default", "mail")
    add()
    add("mail", scheduled_at=outbox.ago(timedelta(seconds=60)))
    add(state=State.COMPLETED, finished_at=outbox.ago(timedelta(0)))
    add(state=State.DEAD, finished_at=outbox.ago(timedelta(hours=2)))  # long ago
    add(state=State.SCHEDULED, scheduled_at=outbox.after(timedelta(hours=1)))
    assert failed() == []


def test_a_row_due_longer_than_the_limit_fails_oldest_due() -> None:
    worker("default", "mail")
    add("mail", scheduled_at=outbox.ago(timedelta(minutes=10)))
    add("default")
    oldest = checks()["oldest_due"]
    assert not oldest["ok"]
    assert 595 <= oldest["value"] <= 660
    assert oldest["queues"] == ["default/mail"]  # only the late queue
    assert failed(max_wait=timedelta(minutes=15)) == []


def test_a_row_not_yet_due_is_not_waiting() -> None:
    add(state=State.RETRYABLE, scheduled_at=outbox.after(timedelta(minutes=5)))
    assert checks()["oldest_due"]["value"] == 0
    assert failed() == []  # and no worker is missed for it


def test_dead_rows_in_the_window_past_the_limit_fail() -> None:
    worker("default")
    add(state=State.DEAD, finished_at=outbox.ago(timedelta(minutes=5)))
    add(state=State.DEAD, finished_at=outbox.ago(timedelta(minutes=30)))
    add(state=State.DEAD, finished_at=outbox.ago(timedelta(hours=3)))
    dead = checks()["dead"]
    assert (dead["ok"], dead["value"], dead["limit"]) == (False, 2, 0)
    assert failed(max_dead=2) == []
    assert checks(dead_window=timedelta(minutes=10))["dead"]["value"] == 1
    with override_settings(SIGNALBOX={"HEALTH_MAX_DEAD": 5}):
        assert failed() == []


def test_due_rows_no_live_worker_consumes_fail_workers() -> None:
    add("mail")
    add("default")
    worker("default")
    workers = checks()["workers"]
    assert (workers["ok"], workers["value"]) == (False, 1)
    assert workers["queues"] == ["default/mail"]


def test_a_stale_worker_record_is_no_worker() -> None:
    add()
    worker("default", seen=timedelta(minutes=5))  # two leases are 60 s
    assert failed() == ["workers"]


def test_a_relay_is_no_worker() -> None:
    add()
    outbox.heartbeat(f"{outbox.RELAY_PREFIX}host", [], [], using="default")
    assert failed() == ["workers"]


def test_rows_handed_to_an_engine_and_not_started_fail_engines() -> None:
    with override_settings(SIGNALBOX=BROKER):
        add(
            "mail",
            engine="broker",
            scheduled_at=outbox.ago(timedelta(minutes=20)),
            handed_over_at=outbox.ago(timedelta(minutes=10)),
        )
        outbox.heartbeat(f"{outbox.RELAY_PREFIX}host", [], [], using="default")
        result = checks(max_wait=timedelta(hours=1))
        assert result["engines"]["queues"] == ["broker/mail"]
        # Another engine's rows need no embedded worker.
        assert failed(max_wait=timedelta(hours=1)) == ["engines"]


def test_rows_only_a_relay_hands_over_fail_relay_while_none_runs() -> None:
    with override_settings(SIGNALBOX=BROKER):
        add(engine="broker", state=State.RETRYABLE)
        add()  # and one for the embedded worker: every query runs
        with CaptureQueriesContext(connection) as queries:
            relay = checks()["relay"]
        assert len(queries) == 6  # as docs/howto/production.md says
        assert (relay["ok"], relay["value"], relay["queues"]) == (False, 1, ["broker"])
        outbox.heartbeat(f"{outbox.RELAY_PREFIX}host", [], [], using="default")
        assert failed() == ["workers"]  # the embedded row's


# The command


def test_the_command_prints_a_line_per_check_and_exits_0_when_healthy() -> None:
    printed, status = run()
    assert status == 0
    lines = printed.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["OK", "oldest_due"],
        ["OK", "dead"],
        ["OK", "workers"],
        ["OK", "engines"],
        ["OK", "relay"],
    ]
    assert lines[0].endswith("0 s (limit 300)")


def test_the_command_exits_1_naming_what_failed() -> None:
    add("mail", state=State.DEAD, finished_at=outbox.ago(timedelta(0)))
    add("mail")
    out = StringIO()
    with pytest.raises(CommandError, match=r"^Unhealthy: dead, workers\.$") as error:
        call_command("signalbox", "health", stdout=out)
    assert error.value.returncode == 1
    assert "FAIL dead       1 dead in 3600 s (limit 0)" in out.getvalue()
    assert "FAIL workers    1 queues without a live worker (limit 0): default/mail" in (
        out.getvalue()
    )


def test_the_command_s_options_override_the_settings() -> None:
    worker("default")
    add(scheduled_at=outbox.ago(timedelta(minutes=2)))
    add(state=State.DEAD, finished_at=outbox.ago(timedelta(minutes=20)))
    printed, status = run()
    assert (status, printed.count("FAIL"), "FAIL dead" in printed) == (1, 1, True)
    assert run("--max-dead", "1")[1] == 0
    assert run("--max-dead", "1", "--max-wait", "60")[1] == 1
    assert run("--dead-window", "600")[1] == 0


def test_the_command_s_json_is_the_stable_structure() -> None:
    add()
    printed, status = run("--json")
    report = json.loads(printed)
    assert status == 1
    assert report == health.check(using="default").as_dict()
    assert report["healthy"] is False
    assert [c["name"] for c in report["checks"]] == [
        "oldest_due",
        "dead",
        "workers",
        "engines",
        "relay",
    ]
    assert set(report["checks"][0]) == {
        "name",
        "ok",
        "value",
        "limit",
        "unit",
        "queues",
    }


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--max-wait", "-1", "number of seconds >= 0, not '-1'"),
        ("--max-wait", "nan", "number of seconds >= 0, not 'nan'"),
        ("--dead-window", "soon", "number of seconds >= 0, not 'soon'"),
        ("--max-dead", "-1", "whole number >= 0, not '-1'"),
        ("--max-dead", "1.5", "whole number >= 0, not '1.5'"),
    ],
)
def test_the_command_refuses_a_wrong_limit_saying_why(
    option: str, value: str, expected: str
) -> None:
    with pytest.raises(CommandError) as error:
        call_command("signalbox", "health", f"{option}={value}", stdout=StringIO())
    assert option in str(error.value)
    assert expected in str(error.value)


# Settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEALTH_MAX_WAIT_SECONDS", -1),
        ("HEALTH_MAX_DEAD", 1.5),
        ("HEALTH_MAX_DEAD", True),
        ("HEALTH_DEAD_WINDOW_SECONDS", 0),
        ("HEALTH_TOKEN", "short"),
        ("HEALTH_TOKEN", 12345),
    ],
)
def test_bad_health_settings_are_refused(key: str, value: object) -> None:
    with (
        override_settings(SIGNALBOX={key: value}),
        pytest.raises(ConfigurationError, match=key) as error,
    ):
        conf.get()
    assert "short" not in str(error.value)  # a token is never repeated


# The view


def staff(is_staff: bool = True) -> Client:
    client = Client()
    user = User.objects.create_user("someone", is_staff=is_staff)
    client.force_login(user)
    return client


def bearer(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def test_anonymous_callers_are_refused_401() -> None:
    response = Client().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "healthy" not in response.json()


def test_a_logged_in_user_who_is_not_staff_is_refused_403() -> None:
    assert staff(is_staff=False).get(URL).status_code == 403


def test_staff_see_the_checks() -> None:
    response = staff().get(URL)
    assert response.status_code == 200
    assert response.json() == health.check(using="default").as_dict()
    assert "no-cache" in response["Cache-Control"]


def test_the_right_token_sees_the_checks() -> None:
    response = bearer(TOKEN).get(URL)
    assert (response.status_code, response.json()["healthy"]) == (200, True)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        "Bearer",
        "Bearer é",
    ],
)
def test_a_wrong_token_is_refused_401(header: str) -> None:
    response = Client(headers={"Authorization": header}).get(URL)
    assert response.status_code == 401


def test_no_token_is_accepted_when_none_is_configured() -> None:
    with override_settings(SIGNALBOX={}):
        assert bearer("").get(URL).status_code == 401
        assert bearer(TOKEN).get(URL).status_code == 401
        assert staff().get(URL).status_code == 200


def test_the_view_answers_503_when_a_check_fails() -> None:
    add()
    response = bearer(TOKEN).get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["healthy"] is False
    assert [c["name"] for c in body["checks"] if not c["ok"]] == ["workers"]


def test_the_view_shows_no_payload() -> None:
    add(payload={"email": "secret@example.com"})
    assert b"secret" not in bearer(TOKEN).get(URL).content


def test_the_view_only_reads() -> None:
    assert bearer(TOKEN).post(URL).status_code == 405


def test_the_checks_run_three_queries_at_most_with_the_embedded_engine_alone() -> None:
    """The grouped due rows, the recent dead count, and the worker records
    only when rows are due: what the docs promise a load balancer's check
    costs (none reads a payload)."""
    with CaptureQueriesContext(connection) as empty:
        health.check(using="default")
    add()
    with CaptureQueriesContext(connection) as waiting:
        health.check(using="default")
    assert (len(empty), len(waiting)) == (2, 3)
    assert not any("payload" in query["sql"] for query in waiting.captured_queries)
