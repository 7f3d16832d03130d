"""What a model instance's snapshot holds: never a password hash, never a field
``SIGNALBOX["SNAPSHOT_EXCLUDE"]`` names, nothing at all for ``snapshot=False``.

Snapshots are kept so a receiver still gets an instance whose row is gone
(after ``post_delete``); they sit in the outbox row, which the admin shows to
anyone with ``view_delivery``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.core import checks
from django.db import models
from django.db.models.signals import post_delete
from django.test import Client, override_settings

import signalbox
from signalbox import codec, conf, testing
from signalbox._states import State
from signalbox.checks import check_snapshot_exclude
from signalbox.exceptions import ConfigurationError
from signalbox.models import Delivery
from signalbox.worker import Outcome
from tests.testapp.models import Order


class Member(AbstractBaseUser):
    """A user model that is not called User: found by its base, not its name."""

    handle = models.CharField(max_length=30, unique=True)
    USERNAME_FIELD = "handle"

    class Meta:
        app_label = "testapp"
        managed = False  # never saved: encoding reads only the instance


class Staff(User):
    """A proxy: the setting's entry for auth.User covers it."""

    class Meta:
        app_label = "testapp"
        proxy = True


ran: list[dict[str, Any]] = []
sent = signalbox.Signal()


def keep(sender: object, **kwargs: Any) -> None:
    ran.append(kwargs)


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    ran.clear()
    with override_settings(SIGNALBOX={"POLL_SECONDS": 0.02}):
        yield


def snapshot(instance: models.Model, **options: Any) -> dict[str, Any]:
    payload = codec.encode({"it": instance}, **options)
    return payload["values"]["it"]["v"]  # type: ignore[no-any-return]


# -- password hashes --------------------------------------------------------


@pytest.mark.django_db
def test_a_users_snapshot_has_no_password_hash() -> None:
    user = User.objects.create_user("ada", "ada@example.com", "s3cret-pw")
    encoded = snapshot(user)
    assert "password" not in encoded["fields"]
    assert "password" not in encoded["strings"]
    assert encoded["fields"]["username"] == "ada"
    assert user.password not in json.dumps(codec.encode({"user": user}))


def test_any_abstract_base_user_loses_its_password_whatever_its_name() -> None:
    member = Member(pk=7, handle="grace")
    member.set_password("s3cret-pw")
    member._state.adding = False
    encoded = snapshot(member)
    assert set(encoded["fields"]) == {"id", "handle", "last_login"}
    assert member.password not in json.dumps(encoded)


@pytest.mark.django_db
def test_a_user_still_decodes_whole_from_its_row() -> None:
    user = User.objects.create_user("ada", "ada@example.com", "s3cret-pw")
    back = codec.decode(json.loads(json.dumps(codec.encode({"user": user}))))
    assert back["user"].password == user.password
    assert back["user"].check_password("s3cret-pw")


@pytest.mark.django_db(transaction=True)
def test_the_admin_never_shows_a_login_s_password_hash(connect: Callable) -> None:
    connect(user_logged_in, keep, run="background", exclude=["request"])
    ada = User.objects.create_user("ada", "ada@example.com", "s3cret-pw")
    Client().force_login(ada)
    row = Delivery.objects.get()
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    viewer = Client()
    viewer.force_login(root)
    page = viewer.get(f"/admin/signalbox/delivery/{row.pk}/change/")
    assert page.status_code == 200
    assert "ada@example.com" in page.content.decode()  # the snapshot is shown
    assert ada.password not in page.content.decode()
    assert ada.password.split("$")[-1] not in json.dumps(row.payload)


# -- SNAPSHOT_EXCLUDE -------------------------------------------------------


@pytest.mark.django_db
def test_the_setting_keeps_named_fields_out_and_they_come_back_deferred() -> None:
    order = Order.objects.create(number="A-1", paid=True)
    with override_settings(
        SIGNALBOX={"SNAPSHOT_EXCLUDE": {"testapp.Order": ["number"]}}
    ):
        payload = codec.encode({"order": order})
        assert set(payload["values"]["order"]["v"]["fields"]) == {"id", "paid"}
        order.delete()
        back = codec.decode(payload)["order"]
    assert codec.from_snapshot(back)
    assert back.paid is True
    assert back.get_deferred_fields() == {"number"}


@pytest.mark.django_db
def test_the_setting_covers_proxies_and_subclasses_of_the_model() -> None:
    User.objects.create_user("ada", "ada@example.com", "s3cret-pw")
    staff = Staff.objects.get()
    with override_settings(SIGNALBOX={"SNAPSHOT_EXCLUDE": {"auth.User": ["email"]}}):
        fields = snapshot(staff)["fields"]
    assert "email" not in fields
    assert "password" not in fields
    assert fields["username"] == "ada"


@pytest.mark.parametrize("name", ["user", "user_id"])
def test_the_setting_takes_a_foreign_keys_name_or_attname(name: str) -> None:
    entry = LogEntry(pk=3, user_id=5, action_flag=1)
    entry._state.adding = False
    assert "user_id" in snapshot(entry)["fields"]
    with override_settings(SIGNALBOX={"SNAPSHOT_EXCLUDE": {"admin.LogEntry": [name]}}):
        assert "user_id" not in snapshot(entry)["fields"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["testapp.Order"], r"must be a dict like"),
        ({"Order": ["number"]}, r"has the key 'Order'; its keys are model labels"),
        ({"testapp.Order": "number"}, r"\['testapp.Order'\] must be a list of field"),
        ({"testapp.Order": [""]}, r"must be a list of field names"),
    ],
)
def test_a_malformed_setting_is_named(value: object, message: str) -> None:
    with (
        override_settings(SIGNALBOX={"SNAPSHOT_EXCLUDE": value}),
        pytest.raises(ConfigurationError, match=message),
    ):
        conf.get()


def test_check_reports_models_and_fields_that_do_not_exist() -> None:
    setting = {"testapp.Ordr": ["number"], "testapp.Order": ["numbr", "number"]}
    with override_settings(SIGNALBOX={"SNAPSHOT_EXCLUDE": setting}):
        found = check_snapshot_exclude()
        assert check_snapshot_exclude in checks.registry.registry.get_checks()
    assert [(m.id, m.msg) for m in found] == [
        (
            "signalbox.E010",
            "settings.SIGNALBOX['SNAPSHOT_EXCLUDE'] names the field 'numbr', "
            "which testapp.Order lacks.",
        ),
        (
            "signalbox.E010",
            "settings.SIGNALBOX['SNAPSHOT_EXCLUDE'] names 'testapp.ordr', "
            "which is not an installed model.",
        ),
    ]


# -- snapshot=False ---------------------------------------------------------


# Written with signalbox.testing: the `signalbox` fixture's drain() runs the
# rows through the codec and the worker's runner inside the test's
# transaction, so these need no committing test case.


@pytest.mark.django_db
def test_without_snapshots_an_instance_travels_as_a_reference(
    connect: Callable, signalbox: Any
) -> None:
    connect(sent, keep, run="background", snapshot=False)
    order = Order.objects.create(number="A-1")
    sent.send(sender=None, order=order)
    encoded = Delivery.objects.get().payload["kwargs"]["values"]["order"]["v"]
    assert (encoded["fields"], encoded["strings"]) == (None, None)
    [run] = signalbox.drain()
    assert run.outcome is Outcome.COMPLETED
    assert ran[0]["order"] == order
    assert ran[0]["order"].number == "A-1"


@pytest.mark.django_db
def test_without_snapshots_a_gone_row_is_a_clear_decode_error(
    connect: Callable, signalbox: Any
) -> None:
    connect(post_delete, keep, sender=Order, run="background", snapshot=False)
    Order.objects.create(number="A-1").delete()
    with pytest.raises(testing.DeliveryFailed) as failed:
        signalbox.drain()
    assert (failed.value.ran.outcome, failed.value.ran.reason) == (
        Outcome.DEAD,
        "decode_error",
    )
    row = Delivery.objects.get()
    assert (row.state, row.reason) == (State.DEAD, "decode_error")
    assert "testapp.Order row is gone" in row.error
    assert "snapshot=False" in row.error
    assert "testapp.Order row is gone" in str(failed.value)
    assert ran == []


@pytest.mark.django_db
def test_other_receivers_keep_their_snapshots(
    connect: Callable, signalbox: Any
) -> None:
    connect(post_delete, keep, sender=Order, run="background")
    Order.objects.create(number="A-1").delete()
    [run] = signalbox.drain()
    assert run.outcome is Outcome.COMPLETED
    assert ran[0]["instance"].number == "A-1"
    assert codec.from_snapshot(ran[0]["instance"])
