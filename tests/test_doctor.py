"""``manage.py signalbox doctor``: each rule on the sample project's seeded
anti-patterns and its clean twin (``tests/doctor_app``), the AST reading, the
command's output and exit status, and the outbox rules on a real database."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

import signalbox
from signalbox import checks, doctor, outbox, registry
from signalbox.doctor import _calls
from signalbox.models import Delivery, WorkerRecord
from tests.doctor_app import clean, helpers, seeded

SEEDED = doctor.Scope(("tests.doctor_app.seeded",))
CLEAN = doctor.Scope(("tests.doctor_app.clean",))


@pytest.fixture(autouse=True)
def sample_project() -> Iterator[None]:
    seeded.connect_all()
    clean.connect_all()
    yield
    seeded.disconnect_all()
    clean.disconnect_all()


def found(scope: doctor.Scope, rules: tuple[doctor.Rule, ...]) -> set[tuple[str, str]]:
    return {(f.id, f.subject) for f in doctor.diagnose(scope, rules=rules)}


def test_every_seeded_anti_pattern_is_found_in_code() -> None:
    here = "tests.doctor_app.seeded"
    assert found(SEEDED, doctor.CODE_RULES) == {
        ("SB101", f"{here}.mails_inline"),
        ("SB101", f"{here}.mails_a_message_on_commit"),
        ("SB101", f"{here}.fetches_through_a_helper"),
        ("SB101", f"{here}.fetches_two_deep"),
        ("SB101", f"{here}.sleeps"),
        ("SB101", f"{here}.sleeps_in_a_coroutine"),
        ("SB111", f"{here}: lambda sender, **kwargs: None"),
        ("SB111", f"{here}: Handler().on_paid"),
        ("SB111", f"{here}: partial(mails_on_login, reason='paid')"),
        ("SB111", f"{here}: audit"),
        ("SB111", f"{here}: nested"),
        ("SB112", f"{here}.make_counter.<locals>.count_sends"),
        ("SB120", f"{here}.mails_on_login"),
    }


def test_the_clean_twin_has_no_finding() -> None:
    assert doctor.diagnose(CLEAN, rules=doctor.CODE_RULES) == []


def test_a_finding_says_where_why_and_the_fix() -> None:
    [finding] = [
        f
        for f in doctor.diagnose(SEEDED, rules=doctor.CODE_RULES)
        if f.subject.endswith(".mails_inline")
    ]
    assert finding.severity == doctor.Severity.WARNING
    line = seeded.mails_inline.__code__.co_firstlineno + 2  # the send_mail line
    assert finding.location == f"tests/doctor_app/seeded.py:{line}"
    assert "django.core.mail.send_mail" in finding.why
    assert 'run="background"' in finding.fix


def test_a_coroutine_that_blocks_is_told_it_stops_its_loop() -> None:
    [finding] = [
        f
        for f in doctor.diagnose(SEEDED, rules=doctor.CODE_RULES)
        if f.subject.endswith(".sleeps_in_a_coroutine")
    ]
    assert "stops its whole event loop" in finding.why


def test_blocking_calls_are_followed_into_the_projects_functions() -> None:
    scope = doctor.Scope()
    [one] = _calls.blocking_calls(seeded.fetches_through_a_helper, scope)
    assert (one.name, one.through) == (
        "urllib.request.urlopen",
        ("tests.doctor_app.helpers.fetch_rates",),
    )
    [two] = _calls.blocking_calls(seeded.fetches_two_deep, scope)
    assert two.through == (
        "tests.doctor_app.helpers.refresh_rates",
        "tests.doctor_app.helpers.fetch_rates",
    )
    assert _calls.blocking_calls(helpers.describe, scope) == []


def test_following_stops_at_its_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_calls, "FOLLOW_DEPTH", 1)
    scope = doctor.Scope()
    assert _calls.blocking_calls(seeded.fetches_through_a_helper, scope) != []
    assert _calls.blocking_calls(seeded.fetches_two_deep, scope) == []


def test_code_outside_the_project_is_not_followed() -> None:
    # A library's function is a library's business: call_command may well
    # block, but the doctor reads only what the project wrote.
    def runs_a_command(sender: Any, **kwargs: Any) -> None:
        call_command("check")

    assert _calls.blocking_calls(runs_a_command, doctor.Scope()) == []


def test_one_receiver_for_any_sender_and_for_one_sender_is_not_twice() -> None:
    # Two connections that differ by their sender are two receivers, and a
    # sender of None ("any") sorts beside a named one (a TypeError once).
    signal = signalbox.Signal()
    signalbox.connect(signal, clean.describes_inline)
    signalbox.connect(signal, clean.describes_inline, sender=Delivery)
    try:
        assert found(CLEAN, doctor.CODE_RULES) == set()
    finally:
        signalbox.disconnect(signal, clean.describes_inline)
        signalbox.disconnect(signal, clean.describes_inline, sender=Delivery)


def test_the_code_rules_are_system_checks_too() -> None:
    messages = checks.check_receivers()
    ids = {m.id for m in messages if "tests.doctor_app.seeded" in m.msg}
    assert ids == {"signalbox.W020", "signalbox.W021", "signalbox.W022"}
    assert not [m for m in messages if "tests.doctor_app.clean" in m.msg]
    assert all("signalbox doctor SB1" in (m.hint or "") for m in messages)


def doctor_command(*args: str) -> str:
    out = io.StringIO()
    call_command("signalbox", "doctor", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_json_has_a_stable_shape() -> None:
    report = json.loads(doctor_command("--json", "--modules", SEEDED.prefixes[0]))
    assert set(report) == {"findings", "counts", "rules"}
    assert report["counts"] == {"error": 6, "warning": 7, "info": 0}
    assert set(report["findings"][0]) == {
        "id",
        "severity",
        "subject",
        "location",
        "why",
        "fix",
    }
    assert report["findings"][0]["severity"] == "error"  # the worst first
    assert "blocking_io" in report["rules"]


@pytest.mark.django_db
def test_the_text_report_ends_with_the_counts() -> None:
    text = doctor_command("--modules", SEEDED.prefixes[0])
    assert text.rstrip().endswith("13 findings: 6 errors, 7 warnings.")
    assert doctor_command("--modules", CLEAN.prefixes[0]).strip() == "No findings."


@pytest.mark.django_db
@pytest.mark.parametrize("level", ["warning", "error"])
def test_fail_on_exits_1_on_a_finding_that_severe(level: str) -> None:
    with pytest.raises(CommandError) as raised:
        doctor_command("--modules", SEEDED.prefixes[0], "--fail-on", level)
    assert raised.value.returncode == 1
    doctor_command("--modules", CLEAN.prefixes[0], "--fail-on", level)  # exits 0


def test_fail_on_compares_severities() -> None:
    warning = doctor.Finding("SB101", doctor.Severity.WARNING, "k", "-", "w", "f")
    assert doctor.failing([warning], "warning") == [warning]
    assert doctor.failing([warning], "error") == []
    assert doctor.failing([warning], None) == []


@pytest.mark.django_db
def test_without_fail_on_findings_exit_0() -> None:
    assert "SB101" in doctor_command("--modules", SEEDED.prefixes[0])


# -- the outbox rules, on the test database ---------------------------------


def waiting_row(receiver: str, *, queue: str = "default", **fields: Any) -> Delivery:
    """A row due for an hour: longer than UNSTARTED_WARNING_SECONDS."""
    row = Delivery.objects.create(
        signal="tests.doctor_app.signals.seeded_order_paid",
        receiver=receiver,
        queue=queue,
        **fields,
    )
    hour_ago = outbox.ago(timedelta(hours=1))
    Delivery.objects.filter(pk=row.pk).update(
        enqueued_at=hour_ago, scheduled_at=hour_ago
    )
    return row


def live_worker(queues: list[str], receivers: list[str]) -> None:
    outbox.heartbeat("doctor-test-worker", queues, receivers, using="default")


def outbox_findings() -> list[tuple[str, str]]:
    return [(f.id, f.subject) for f in doctor.diagnose(rules=doctor.OUTBOX_RULES)]


@pytest.mark.django_db
def test_a_laptop_with_nothing_waiting_and_no_worker_is_told_nothing() -> None:
    assert outbox_findings() == []


@pytest.mark.django_db
def test_rows_waiting_with_no_worker_name_their_queue() -> None:
    waiting_row("tests.doctor_app.clean.mails_in_background", queue="mail")
    assert outbox_findings() == [("SB131", "engine 'default', queue 'mail'")]


@pytest.mark.django_db
def test_a_fresh_row_is_not_yet_a_finding() -> None:
    Delivery.objects.create(signal="s", receiver="k")
    assert outbox_findings() == []


@pytest.mark.django_db
def test_a_key_no_live_worker_knows() -> None:
    everything = sorted(registry.registry.background())
    live_worker(["default"], everything)
    waiting_row("tests.doctor_app.gone.receiver")
    [finding] = doctor.diagnose(rules=doctor.OUTBOX_RULES)
    assert (finding.id, finding.subject) == ("SB130", "tests.doctor_app.gone.receiver")
    assert "renamed or removed" in finding.why


@pytest.mark.django_db
def test_a_worker_whose_receivers_differ() -> None:
    everything = sorted(registry.registry.background())
    live_worker(["default"], [*everything[1:], "tests.doctor_app.old.receiver"])
    [finding] = doctor.diagnose(rules=doctor.OUTBOX_RULES)
    assert (finding.id, finding.subject) == ("SB133", "worker doctor-test-worker")
    assert f"it lacks {everything[0]}" in finding.why
    assert "tests.doctor_app.old.receiver, which this process lacks" in finding.why


@pytest.mark.django_db
def test_a_stale_worker_is_no_worker() -> None:
    live_worker(["default"], [])
    WorkerRecord.objects.update(seen_at=outbox.ago(timedelta(hours=1)))
    assert outbox_findings() == []


BROKER = {
    "ENGINES": {
        "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
        "broker": {"BACKEND": "tests.testapp.engines.RecordingEngine"},
    }
}


@pytest.mark.django_db
@override_settings(SIGNALBOX=BROKER)
def test_rows_due_for_an_engine_with_no_relay() -> None:
    waiting_row("tests.doctor_app.clean.mails_in_background", engine="broker")
    [finding] = doctor.diagnose(rules=doctor.OUTBOX_RULES)
    assert (finding.id, finding.severity) == ("SB132", doctor.Severity.ERROR)
    assert "signalbox relay" in finding.fix


@pytest.mark.django_db
@override_settings(SIGNALBOX=BROKER)
def test_rows_handed_over_that_nobody_started() -> None:
    row = waiting_row("tests.doctor_app.clean.mails_in_background", engine="broker")
    Delivery.objects.filter(pk=row.pk).update(
        handed_over_at=outbox.ago(timedelta(minutes=30)), handovers=1
    )
    assert outbox_findings() == [("SB131", "engine 'broker', queue 'default'")]


def test_the_sample_project_leaves_nothing_connected() -> None:
    seeded.disconnect_all()
    clean.disconnect_all()
    rows = doctor.Context(doctor.Scope(("tests.doctor_app",)), "default").receivers
    assert rows == []
