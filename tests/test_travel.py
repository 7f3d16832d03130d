"""What travels to a deferred receiver: ``prepare=``, ``exclude=``, and the
check that finds a background receiver on a signal whose arguments cannot travel.

The first-day failure these guard against: ``@receiver(user_logged_in,
run="background")`` connected fine, ``manage.py check`` was silent, and every
admin login then failed in the sender (``CodecError`` for ``request``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core import checks
from django.core.management import call_command
from django.core.signals import request_finished
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.test import Client, override_settings

import signalbox
from signalbox import testing
from signalbox.checks import check_untravelled_arguments
from signalbox.exceptions import CodecError, ReceiverError
from signalbox.models import Delivery
from signalbox.worker import Outcome
from tests.testapp.models import Order

ran: list[dict[str, Any]] = []
sent = signalbox.Signal()

AGENT = "Mozilla/5.0 (first-day test)"


def login_details(sender: object, user: User, request: Any, **kwargs: Any) -> dict:
    """The pattern docs/background.md shows: what a login receiver needs."""
    return {
        "user": user,
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.headers.get("User-Agent", ""),
    }


def remember_login(sender: object, **kwargs: Any) -> None:
    ran.append({"sender": sender, **kwargs})


def audit(sender: object, **kwargs: Any) -> None:
    ran.append({"sender": sender, **kwargs})


def returns_the_request(sender: object, request: Any, **kwargs: Any) -> dict:
    return {"request": request}


def returns_a_list(sender: object, **kwargs: Any) -> Any:
    return [1, 2]


def renames(sender: object, order: Order, **kwargs: Any) -> dict:
    return {"sender": "shop", "number": order.number}


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    ran.clear()
    with override_settings(SIGNALBOX={"POLL_SECONDS": 0.02}):
        yield


def drain() -> Counter[Outcome]:
    """What ran, by outcome: each delivery through the codec and the worker's
    runner, as signalbox.testing runs them (dogfooding)."""
    return Counter(run.outcome for run in testing.drain(raise_errors=False))


def admin_login(**headers: Any) -> Any:
    User.objects.create_user("ada", "ada@example.com", "s3cret-pw", is_staff=True)
    client = Client(HTTP_USER_AGENT=AGENT, REMOTE_ADDR="203.0.113.9", **headers)
    return client.post(
        "/admin/login/", {"username": "ada", "password": "s3cret-pw", "next": "/"}
    )


# -- the admin login, end to end --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_admin_login_sends_what_prepare_returns(connect: Callable) -> None:
    connect(user_logged_in, remember_login, run="background", prepare=login_details)
    response = admin_login()
    assert response.status_code == 302
    row = Delivery.objects.get()
    assert set(row.payload["kwargs"]["values"]) == {"user", "ip", "user_agent"}
    assert drain() == {Outcome.COMPLETED: 1}
    [call] = ran
    assert call["user"] == User.objects.get(username="ada")
    assert call["sender"] is User
    assert call["ip"] == "203.0.113.9"
    assert call["user_agent"] == AGENT
    assert "request" not in call


@pytest.mark.django_db(transaction=True)
def test_an_admin_login_with_exclude_sends_the_rest(connect: Callable) -> None:
    connect(user_logged_in, remember_login, run="background", exclude=["request"])
    assert admin_login().status_code == 302
    assert drain() == {Outcome.COMPLETED: 1}
    [call] = ran
    assert call["user"].username == "ada"
    assert "request" not in call


@pytest.mark.django_db(transaction=True)
def test_without_either_the_login_error_says_what_to_do(connect: Callable) -> None:
    connect(user_logged_in, remember_login, run="background")
    with pytest.raises(CodecError) as raised:
        admin_login()
    error = raised.value
    assert (error.signal, error.argument) == (
        "django.contrib.auth.signals.user_logged_in",
        "request",
    )
    assert error.receiver == f"{__name__}.remember_login"
    assert "exclude=['request']" in str(error)
    assert "prepare=" in str(error)
    assert Delivery.objects.count() == 0


# -- the send path ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_prepare_returning_what_cannot_travel_names_all_three(
    connect: Callable,
) -> None:
    connect(user_logged_in, audit, run="background", prepare=returns_the_request)
    with pytest.raises(CodecError) as raised:
        admin_login()
    error = raised.value
    assert error.signal == "django.contrib.auth.signals.user_logged_in"
    assert error.receiver == f"{__name__}.audit"
    assert error.argument == "request"
    assert "WSGIRequest" in str(error)
    assert "prepare= returned it" in str(error)
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_prepare_must_return_a_dict(connect: Callable) -> None:
    connect(sent, audit, run="background", prepare=returns_a_list)
    with pytest.raises(CodecError, match=r"returned a list; it must return a dict"):
        sent.send(sender=None)
    assert Delivery.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_prepare_may_change_the_sender(connect: Callable) -> None:
    connect(sent, audit, run="background", prepare=renames)
    sent.send(sender=Order, order=Order.objects.create(number="A-1"))
    drain()
    assert ran == [{"sender": "shop", "signal": sent, "number": "A-1"}]


@pytest.mark.django_db(transaction=True)
def test_an_excluded_sender_travels_as_none(connect: Callable) -> None:
    connect(request_finished, audit, run="background", exclude=["sender"])
    Client().get("/admin/login/")
    assert drain() == {Outcome.COMPLETED: 1}
    assert [call["sender"] for call in ran] == [None]


@pytest.mark.django_db(transaction=True)
def test_signal_connect_and_receiver_take_the_options() -> None:
    sent.connect(audit, run="background", exclude=["secret"])
    signalbox.receiver(post_save, sender=Order, run="background", exclude="raw")(
        remember_login
    )
    try:
        sent.send(sender=None, secret=object(), n=1)
        Order.objects.create(number="B-2")
        assert drain() == {Outcome.COMPLETED: 2}
    finally:
        sent.disconnect(audit)
        post_save.disconnect(remember_login, sender=Order)
    by_receiver = sorted(ran, key=lambda call: "instance" in call)
    assert by_receiver[0] == {"sender": None, "signal": sent, "n": 1}
    assert "raw" not in by_receiver[1]
    assert by_receiver[1]["created"] is True


# -- on_commit --------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_on_commit_takes_prepare_and_keeps_the_send_s_database(
    connect: Callable,
) -> None:
    def number_only(sender: object, instance: Order, **kwargs: Any) -> dict:
        return {"number": instance.number}

    connect(post_save, audit, sender=Order, run="on_commit", prepare=number_only)
    with transaction.atomic(using="other"):
        Order.objects.using("other").create(number="C-3")
        assert ran == []  # waits for the commit of "other", where the send was
    assert ran == [{"sender": Order, "signal": post_save, "number": "C-3"}]


@pytest.mark.parametrize(
    ("run", "options", "message"),
    [
        ("inline", {"prepare": login_details}, "run='inline' takes no prepare"),
        ("inline", {"exclude": ["request"]}, "run='inline' takes no exclude"),
        ("on_commit", {"snapshot": False}, "run='on_commit' takes no snapshot"),
        ("background", {"prepare": "mod.func"}, "prepare must be a plain function"),
        ("background", {"exclude": 3}, "exclude must be a list of argument names"),
        ("background", {"exclude": ["signal"]}, "exclude cannot name 'signal'"),
        ("background", {"snapshot": "no"}, "snapshot must be True or False"),
    ],
)
def test_options_that_make_no_sense_are_refused(
    run: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ReceiverError, match=message) as raised:
        signalbox.connect(sent, audit, run=run, **options)  # type: ignore[arg-type]
    assert raised.value.signal is sent
    assert not sent.has_listeners()


def test_a_misspelt_option_is_told_the_travel_options_too() -> None:
    with pytest.raises(ReceiverError, match=r"no option exlude; .*prepare, exclude"):
        signalbox.connect(sent, audit, run="background", exlude=["request"])


def test_a_coroutine_prepare_is_refused() -> None:
    async def prepare(**kwargs: Any) -> dict:
        return {}

    with pytest.raises(ReceiverError, match="cannot be a coroutine function"):
        signalbox.connect(sent, audit, run="background", prepare=prepare)


# -- manage.py check and signalbox list -------------------------------------


def w010(key: str) -> list[checks.CheckMessage]:
    return [
        message
        for message in check_untravelled_arguments()
        if message.id == "signalbox.W010" and message.msg.startswith(key)
    ]


def test_check_flags_a_background_receiver_that_says_nothing(
    connect: Callable,
) -> None:
    connect(user_logged_in, remember_login, run="background")
    [warning] = w010(f"{__name__}.remember_login")
    assert "django.contrib.auth.signals.user_logged_in" in warning.msg
    assert "'request' is an HttpRequest" in warning.msg
    assert "exclude=['request']" in warning.hint
    assert warning in checks.run_checks()  # registered: manage.py check says it


@pytest.mark.parametrize(
    "options",
    [{"prepare": login_details}, {"exclude": ["request"]}, {"run": "on_commit"}],
)
def test_check_is_silent_once_the_receiver_says_what_travels(
    connect: Callable, options: dict[str, Any]
) -> None:
    connect(user_logged_in, remember_login, **{"run": "background", **options})
    assert w010(f"{__name__}.remember_login") == []


def test_check_names_what_exclude_left_in(connect: Callable) -> None:
    connect(user_login_failed, audit, run="background", exclude=["request"])
    [warning] = w010(f"{__name__}.audit")
    assert "'credentials'" in warning.msg
    assert "'request'" not in warning.msg


def test_check_flags_pre_save_whose_new_instances_cannot_travel(
    connect: Callable,
) -> None:
    connect(pre_save, audit, sender=Order, run="background")
    [warning] = w010(f"{__name__}.audit")
    assert "'instance' is unsaved when its row is being created" in warning.msg


def test_check_leaves_signals_it_knows_nothing_about_alone(
    connect: Callable,
) -> None:
    connect(sent, audit, run="background")
    connect(post_save, remember_login, sender=Order, run="background")
    assert check_untravelled_arguments() == []


def test_list_flags_it_too(connect: Callable) -> None:
    connect(user_logged_in, remember_login, run="background")
    connect(user_logged_in, audit, run="background", prepare=login_details)
    out = StringIO()
    call_command("signalbox", "list", "--json", stdout=out)
    [entry] = [e for e in json.loads(out.getvalue()) if e["signal"].endswith("in")]
    flagged = {r["key"]: r["untravelled"] for r in entry["receivers"]}
    assert flagged[f"{__name__}.remember_login"] == ["request"]
    assert flagged[f"{__name__}.audit"] == []
    out = StringIO()
    call_command("signalbox", "list", stdout=out)
    assert "cannot send request to it" in out.getvalue()
    assert "signalbox.W010" in out.getvalue()
