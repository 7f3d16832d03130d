"""Security: what rows and messages can never make signalbox do or show.

- Import by name happens only where settings or Django's app registry feed it,
  never from a row (a scan of the package, with an allow-list of reasons).
- Nothing that deserialises to code (pickle and friends, eval, exec) is used.
- Admin actions need their own permission and a CSRF token; every page
  escapes what rows hold.
- The command line (``signalbox retry``, ``signalbox prune``) is an operator
  tool and checks no Django permission: access to ``manage.py`` is access to
  the settings, hence to the database. The permissions guard the admin, and
  must guard any web view that changes deliveries: only the admin and the
  command call the transitions a person asks for.
- A secret sent as an argument, down every path a delivery can take, never
  reaches the logs, a delivery's repr or str, or ``signalbox status`` and
  ``signalbox list``.
"""

from __future__ import annotations

import argparse
import ast
import enum
import json
import logging
import re
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils.safestring import mark_safe

import signalbox
from signalbox import codec, outbox, registry
from signalbox._states import State
from signalbox.exceptions import CodecError, Retry
from signalbox.models import Delivery, WorkerRecord
from signalbox.worker import Outcome, Worker, run_delivery
from tests.test_admin import CODENAMES, LIST, change_url, dead, logged_in, staff
from tests.test_architecture import imported, modules

# --- import by name ----------------------------------------------------------------

# Calls that turn a string into a module, an attribute or a model.
BY_NAME = {
    "__import__",
    "import_module",
    "import_string",
    "find_spec",
    "spec_from_file_location",
    "exec_module",
    "load_module",
    "resolve_name",
    "locate",
    "run_module",
    "run_path",
    "autodiscover_modules",
    "module_has_submodule",
    "get_model",
    "get_app_config",
}
IMPORT_MACHINERY = {"importlib", "pkgutil", "pydoc", "runpy", "zipimport"}

# Every place a name becomes an object, and why its name cannot come from a row.
ALLOWED_BY_NAME: dict[tuple[str, str, str], str] = {
    ("signalbox.codec._registry", "<module>", "import_string"): (
        "imported for _imported() below"
    ),
    ("signalbox.codec._registry", "_imported", "import_string"): (
        'the paths are SIGNALBOX["CODEC_TYPES"], from settings; a payload '
        "names a type only to look it up among those already imported"
    ),
    ("signalbox.engines", "<module>", "import_string"): ("imported for _build() below"),
    ("signalbox.engines", "_build", "import_string"): (
        'the path is an engine\'s BACKEND in SIGNALBOX["ENGINES"], from '
        "settings; a row or a message names an engine only by its alias, "
        "looked up among the configured ones"
    ),
    ("signalbox.engines", "Engine.import_option", "import_string"): (
        'the path is an engine\'s OPTIONS entry in SIGNALBOX["ENGINES"] (the '
        "Celery engine's OPTIONS['app']), from settings; a message names only a "
        "delivery id"
    ),
    ("signalbox.engines._clients", "<module>", "import_string"): (
        "imported for dramatiq_broker() below"
    ),
    ("signalbox.engines._clients", "dramatiq_broker", "import_string"): (
        "the path is the Dramatiq engine's OPTIONS['broker'] in "
        'SIGNALBOX["ENGINES"], from settings; its messages name only the '
        "one actor the engine declared"
    ),
    ("signalbox.checks", "_missing", "get_model"): (
        'the labels are SIGNALBOX["SNAPSHOT_EXCLUDE"]\'s keys, from settings, '
        "looked up among installed models; it imports nothing"
    ),
    ("signalbox.codec._decoding", "_model", "get_model"): (
        "looks a label up among installed models in Django's app registry, "
        "which app loading filled; it imports nothing"
    ),
    ("signalbox.codec._encoding", "_dataclass_fields", "getattr"): (
        "reads the fields dataclasses.fields() lists for a registered type, "
        "at send time, from the value being sent"
    ),
    ("signalbox.doctor._calls", "_resolve", "getattr"): (
        "looks a name a receiver's source calls up among the builtins, for "
        "signalbox doctor; the name comes from the project's code, never "
        "from a row, and the value is only read"
    ),
    ("signalbox.doctor._scope", "Scope.modules", "sys.modules"): (
        "lists the modules already imported, for signalbox doctor to read "
        "their source; it imports nothing"
    ),
    ("signalbox.doctor._scope", "_is_project", "sys.modules"): (
        "finds an already imported module by the name a connected receiver's "
        "__module__ gives, to read its file's path; it imports nothing"
    ),
    ("signalbox.management.commands.signalbox", "Command.handle", "getattr"): (
        "the subcommand is one of argparse's fixed choices; it names a method"
    ),
    ("signalbox._naming", "signal_name", "sys.modules"): (
        "counts the modules already imported"
    ),
    ("signalbox._naming", "_name_in", "sys.modules"): (
        "reads a module already imported, named by the Signal's own "
        "defined_in (set in code), to name the signal; imports nothing"
    ),
    ("signalbox._naming", "_index_loaded_modules", "sys.modules"): (
        "walks the modules already imported to name a signal; imports nothing"
    ),
}


class _ByName(ast.NodeVisitor):
    """Collects (module, enclosing function, what) for each lookup by name."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: set[tuple[str, str, str]] = set()

    def _add(self, what: str) -> None:
        self.found.add((self.module, ".".join(self.scope) or "<module>", what))

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = getattr(func, "id", None) or getattr(func, "attr", None)
        if name in BY_NAME:
            self._add(name)
        dynamic = len(node.args) > 1 and not isinstance(node.args[1], ast.Constant)
        if name == "getattr" and dynamic:
            self._add("getattr")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if getattr(node.value, "id", None) == "sys" and node.attr == "modules":
            self._add("sys.modules")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in IMPORT_MACHINERY:
                self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            root = (node.module or "").split(".")[0]
            if root in IMPORT_MACHINERY or alias.name in BY_NAME:
                self._add(alias.name)


def lookups_by_name() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for module, tree in modules().items():
        visitor = _ByName(module)
        visitor.visit(tree)
        found |= visitor.found
    return found


def test_names_become_objects_only_where_settings_or_app_loading_feed_them() -> None:
    # A new entry must say here why its name cannot come from a row; one that
    # went away must leave the list, so the list stays the truth.
    assert lookups_by_name() == set(ALLOWED_BY_NAME)


def test_the_scan_sees_every_form_of_lookup_by_name() -> None:
    source = """
import importlib
from importlib import import_module as load
from django.utils.module_loading import import_string
def f(row):
    __import__(row.path)
    load(row.path)
    getattr(module, row.name)
    getattr(module, "fixed")
    apps.get_model(row.label)
    sys.modules[row.name]
"""
    visitor = _ByName("m")
    visitor.visit(ast.parse(source))
    assert {what for _, _, what in visitor.found} == {
        "importlib",
        "import_module",
        "import_string",
        "__import__",
        "getattr",
        "get_model",
        "sys.modules",
    }


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # tests.testapp.trap leaves this file behind if anything imports it.
    marker = tmp_path / "imported"
    monkeypatch.setenv("SIGNALBOX_TRAP_FILE", str(marker))
    assert "tests.testapp.trap" not in sys.modules
    yield marker
    assert not marker.exists()
    assert "tests.testapp.trap" not in sys.modules


def tagged(tag: str, data: Any) -> dict[str, Any]:
    return {"format": 1, "values": {"x": {"$sb": tag, "v": data}}}


@pytest.mark.parametrize(
    "payload",
    [
        tagged("type", "tests.testapp.trap.boom"),
        tagged("enum", ["tests.testapp.trap.Color", "RED"]),
        tagged("dataclass", ["tests.testapp.trap.Point", {}]),
        tagged("modelclass", "trap.Boom"),
        tagged("queryset", {"model": "tests.testapp.trap", "db": "default", "pks": []}),
    ],
)
def test_a_payload_that_names_a_module_never_imports_it(
    trap: Path, payload: dict[str, Any]
) -> None:
    with pytest.raises(signalbox.DecodeError):
        codec.decode(payload)
    with pytest.raises(signalbox.DecodeError):
        codec.decode_sender(payload["values"]["x"])


@pytest.mark.django_db(transaction=True)
def test_a_row_that_names_a_module_is_buried_without_importing_it(
    trap: Path,
) -> None:
    [claimed] = enqueue_and_claim("tests.testapp.trap.boom", {})
    assert run_delivery(claimed, {}, using="default") == Outcome.DEAD
    assert Delivery.objects.get().reason == "unknown_receiver"


# --- nothing that runs data as code ------------------------------------------------

FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "yaml",
    "ruamel",
    "runpy",
    "code",
    "codeop",
}
FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__", "breakpoint"}


def unsafe_uses(tree: ast.Module) -> set[str]:
    found = {name for name in imported(tree) if name.split(".")[0] in FORBIDDEN_MODULES}
    for node in ast.walk(tree):
        # A bare name (a call, or an alias such as `run = eval`), builtins.eval,
        # and getattr(builtins, "eval").
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in {"eval", "exec"}:
            found.add(f"*.{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in FORBIDDEN_NAMES:
            found.add(repr(node.value))
    return found


@pytest.mark.parametrize(("module", "tree"), sorted(modules().items()))
def test_nothing_unsafe_is_imported_or_called(module: str, tree: ast.Module) -> None:
    assert unsafe_uses(tree) == set(), f"{module} uses {unsafe_uses(tree)}"


def test_the_unsafe_scan_sees_what_it_looks_for() -> None:
    source = """
import pickle
from yaml import load
import builtins
run = eval
exec("x")
builtins.eval("1")
getattr(builtins, "compile")
"""
    assert unsafe_uses(ast.parse(source)) == {
        "pickle",
        "yaml.load",
        "eval",
        "exec",
        "*.eval",
        "'compile'",
    }


# --- the admin: permissions, CSRF, escaping ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("codenames", "action"),
    [
        (("view_delivery",), "retry"),
        (("view_delivery",), "erase_payload"),
        (("view_delivery", "erase_delivery_payload"), "retry"),
        (("view_delivery", "retry_delivery"), "erase_payload"),
        (("view_delivery",), "delete_selected"),
    ],
)
def test_an_action_without_its_permission_is_refused(
    codenames: tuple[str, ...], action: str
) -> None:
    row = dead()
    client = logged_in(staff(*codenames))
    page = client.get(LIST)
    assert page.status_code == 200
    assert row.receiver in page.content.decode()
    response = client.post(LIST, {"action": action, "_selected_action": [row.pk]})
    assert response.status_code == 403
    after = Delivery.objects.get(pk=row.pk)
    assert (after.state, after.payload) == (State.DEAD, row.payload)


@pytest.mark.django_db
def test_a_viewer_is_offered_no_action() -> None:
    dead()
    viewer = logged_in(staff("view_delivery")).get(LIST).content.decode()
    operator = logged_in(staff(*CODENAMES, name="op")).get(LIST).content.decode()
    assert 'name="_selected_action"' not in viewer
    assert 'name="_selected_action"' in operator
    assert 'value="retry"' in operator
    assert 'value="erase_payload"' in operator


@pytest.mark.django_db
def test_staff_without_view_permission_see_nothing() -> None:
    row = dead()
    nobody = logged_in(staff())
    assert nobody.get(LIST).status_code == 403
    assert nobody.get(change_url(row)).status_code == 403
    workers = reverse("admin:signalbox_workerrecord_changelist")
    assert nobody.get(workers).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["retry", "erase_payload"])
def test_actions_need_the_csrf_token(action: str) -> None:
    row = dead()
    client = logged_in(staff(*CODENAMES), enforce_csrf_checks=True)
    posted = {"action": action, "_selected_action": [row.pk]}
    assert client.post(LIST, posted).status_code == 403
    after = Delivery.objects.get(pk=row.pk)
    assert (after.state, after.payload) == (State.DEAD, row.payload)
    token = client.get(LIST).context["csrf_token"]
    response = client.post(LIST, {**posted, "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    after = Delivery.objects.get(pk=row.pk)
    assert (after.state, after.payload) != (State.DEAD, row.payload)


MARK = "<script>sb_xss()</script>"
ESCAPED = "&lt;script&gt;sb_xss()&lt;/script&gt;"


@pytest.mark.django_db
def test_every_page_escapes_what_rows_hold() -> None:
    row = dead(
        receiver=f"shop.{MARK}",
        signal=f"shop.{MARK}",
        queue=MARK,
        reason=MARK,
        error=f"Traceback\nValueError: {MARK}",
        payload={"sender": MARK, "kwargs": {"format": 1, "values": {MARK: MARK}}},
    )
    worker = WorkerRecord.objects.create(name=MARK, queues=[MARK], receivers=[MARK])
    client = logged_in(staff(*CODENAMES, "view_workerrecord"))
    pages = {
        "list": (LIST, {}),
        "filtered list": (LIST, {"reason": MARK}),
        "search": (LIST, {"q": MARK}),
        "change": (change_url(row), {}),
        "history": (reverse("admin:signalbox_delivery_history", args=[row.pk]), {}),
        "workers": (reverse("admin:signalbox_workerrecord_changelist"), {}),
        "worker": (
            reverse("admin:signalbox_workerrecord_change", args=[worker.pk]),
            {},
        ),
    }
    for page, (url, query) in pages.items():
        response = client.get(url, query)
        assert response.status_code == 200, page
        text = response.content.decode()
        assert MARK not in text, page
        assert ESCAPED in text, page  # shown, and escaped
    change = client.get(change_url(row)).content.decode()
    # signal, receiver, queue, reason, error, and the payload's sender, key and value
    assert change.count(ESCAPED) >= 8


# --- the command line: an operator tool ------------------------------------------

# The transitions a person asks for, and who may call them, behind what.
BY_A_PERSON = {"retry", "retry_dead", "erase_payloads", "prune"}
ASKED_THROUGH = {
    "signalbox.admin": "one permission per action, and the CSRF token",
    "signalbox.management.commands.signalbox": "access to manage.py",
}


def test_only_the_admin_and_the_command_call_what_a_person_asks_for() -> None:
    # A new web view calling these would need the admin's permission checks;
    # this makes it show up here before it ships without them.
    callers: set[str] = set()
    for name, tree in modules().items():
        if name.startswith("signalbox.outbox"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "signalbox.outbox":
                if BY_A_PERSON & {alias.name for alias in node.names}:
                    callers.add(name)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in BY_A_PERSON
                and isinstance(node.value, ast.Name)
                and node.value.id == "outbox"
            ):
                callers.add(name)
    assert callers == set(ASKED_THROUGH)


@pytest.mark.django_db
def test_the_command_line_needs_no_django_user_and_names_none() -> None:
    from django.contrib.auth.models import User

    from signalbox.management.commands.signalbox import Command

    row = dead()
    assert not User.objects.exists()
    out = StringIO()
    call_command("signalbox", "retry", str(row.pk), stdout=out)
    assert Delivery.objects.get(pk=row.pk).state == State.AVAILABLE
    call_command("signalbox", "prune", stdout=out)
    # No --as-user: a name typed by whoever already holds the database's
    # credentials would check nothing, and would read as if it did.
    parser = Command().create_parser("manage.py", "signalbox")
    subcommands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    options = {
        option
        for sub in subcommands.values()
        for each in sub._actions
        for option in each.option_strings
    }
    assert "--database" in options
    assert not {option for option in options if "user" in option}


# --- a secret sent down every path -------------------------------------------------

SECRET = "s3cr3t-sentinel-5d1f0a"
# A secret that has the shape of a name (a type name, a model label, a
# keyword), and one that has the shape of an e-mail address: messages that
# quote "names" or dict keys would show them, where the hyphens of SECRET
# keep it out of every place a name can be shown.
NAME_SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
EMAIL_SECRET = "alice.s3cr3t@example.com"
SECRETS = (SECRET, NAME_SECRET, EMAIL_SECRET)


@codec.register
class Tier(enum.Enum):
    GOLD = "gold"


guarded = signalbox.Signal()
ran: list[str] = []


class Opaque:
    """A value that cannot travel, and says what it holds when asked."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __repr__(self) -> str:
        return f"Opaque({self.secret!r})"

    __str__ = __repr__


def accept(sender: object, token: str, **kwargs: Any) -> None:
    ran.append("accepted")


def postpone(sender: object, token: str, **kwargs: Any) -> None:
    ran.append("postponed")
    if ran.count("postponed") == 1:
        raise Retry(delay=0, reason=f"waiting for {token}")


def explode(sender: object, token: str, **kwargs: Any) -> None:
    ran.append("exploded")
    raise RuntimeError(f"the card {token} was refused")


NO_WAIT = signalbox.Backoff(base=timedelta(0), cap=timedelta(0))


@pytest.fixture
def watched(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], None]]:
    """Runs the test with every logger captured; returns the leak check."""
    ran.clear()
    caplog.set_level(logging.DEBUG)
    with override_settings(SIGNALBOX={"POLL_SECONDS": 0.02}):
        yield lambda: assert_nowhere(caplog)


def assert_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter()
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            # The message, its arguments, a traceback or stack, and extras
            # (what a metrics or JSON log handler would take as labels).
            seen = [
                record.getMessage(),
                formatter.format(record),
                record.exc_text or "",
                repr(vars(record)),
            ]
            assert not any(hidden(text) for text in seen), record.getMessage()
    for row in Delivery.objects.all():
        assert not hidden(repr(row))
        assert not hidden(str(row))
    for args in (["status"], ["status", "--json"], ["list"], ["list", "--json"]):
        out = StringIO()
        call_command("signalbox", *args, stdout=out)
        assert not hidden(out.getvalue()), args


def hidden(text: str) -> list[str]:
    """The secrets ``text`` shows."""
    return [secret for secret in SECRETS if secret in text]


def drain() -> dict[Outcome, int]:
    return Worker(burst=True, concurrency=1).run().by_outcome


def enqueue_and_claim(receiver: str, payload: Any) -> list[outbox.Claimed]:
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver=receiver, payload=payload)],
        using="default",
    )
    return outbox.claim(
        worker="w",
        queues=["default"],
        receivers=[receiver],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )


secret_paths = pytest.mark.django_db(transaction=True)


@secret_paths
def test_a_secret_is_kept_out_of_sight_on_success(
    connect: Any, watched: Callable[[], None]
) -> None:
    connect(guarded, accept, run="background")
    guarded.send(sender=None, token=SECRET)
    assert SECRET in json.dumps(Delivery.objects.get().payload)
    assert drain() == {Outcome.COMPLETED: 1}
    assert ran == ["accepted"]
    watched()


@secret_paths
def test_a_secret_is_kept_out_of_sight_through_a_retry(
    connect: Any, watched: Callable[[], None]
) -> None:
    connect(guarded, postpone, run="background")
    guarded.send(sender=None, token=SECRET)
    assert drain() == {Outcome.RETRYING: 1, Outcome.COMPLETED: 1}
    assert ran == ["postponed", "postponed"]
    watched()


@secret_paths
def test_a_secret_is_kept_out_of_sight_through_failures_and_death(
    connect: Any, watched: Callable[[], None]
) -> None:
    connect(guarded, explode, run="background", retries=2, backoff=NO_WAIT)
    guarded.send(sender=None, token=SECRET)
    assert drain() == {Outcome.RETRYING: 1, Outcome.DEAD: 1}
    row = Delivery.objects.get()
    assert (row.state, row.reason) == (State.DEAD, "max_attempts")
    # The receiver put the secret in its own exception: the row keeps it, for
    # the people allowed to read the row, and the logs name only its type.
    assert SECRET in row.error
    watched()


@secret_paths
def test_a_secret_is_kept_out_of_sight_for_an_unknown_receiver(
    watched: Callable[[], None],
) -> None:
    payload = {"sender": None, "kwargs": codec.encode({"token": SECRET})}
    [claimed] = enqueue_and_claim("shop.receivers.gone", payload)
    found = registry.registry.background()
    assert run_delivery(claimed, found, using="default") == Outcome.DEAD
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver="shop.other", payload=payload)],
        using="default",
    )
    buried = outbox.bury_unknown(known=set(), grace=timedelta(0), using="default")
    assert buried == 1
    assert {row.reason for row in Delivery.objects.all()} == {"unknown_receiver"}
    watched()


ORDER_REF = {"model": "testapp.Order", "db": "default", "pk": 1}
ORDER_REF |= {"fields": {}, "strings": {}}
ORDER_SET = {"model": "testapp.Order", "db": "default"}


def snapshot(
    fields: dict[str, Any] | None = None, strings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The arguments ``{"token": <an Invoice whose row is gone>}``, as the
    codec writes them, with ``fields`` and ``strings`` in its snapshot."""
    reference = {"model": "testapp.Invoice", "db": "default", "pk": 2**40}
    reference |= {"fields": fields or {}, "strings": strings or {}}
    return {"format": 1, "values": {"token": {"$sb": "model", "v": reference}}}


MALFORMED = [
    {"sender": None, "kwargs": {"format": 1, "values": {"token": SECRET}, "x": 1}},
    {"sender": None, "kwargs": {"format": 1, "values": [SECRET]}},
    {"sender": None, "kwargs": tagged("decimal", SECRET)},
    {"sender": None, "kwargs": tagged("datetime", [SECRET, None, 0])},
    {"sender": None, "kwargs": tagged("enum", [SECRET, "RED"])},
    {"sender": None, "kwargs": tagged(SECRET, 1)},
    {"sender": {"$sb": "type", "v": SECRET}, "kwargs": tagged("int", "1")},
    {"sender": SECRET},
    SECRET,
    # Secrets shaped like names and e-mail addresses, as dict keys and values,
    # and where a type, model, member or database name belongs.
    {"sender": None, "kwargs": tagged("dict", [[NAME_SECRET, {"$sb": "uuid"}]])},
    {"sender": None, "kwargs": tagged("uuid", NAME_SECRET)},
    {"sender": None, "kwargs": tagged("date", EMAIL_SECRET)},
    {
        "sender": None,
        "kwargs": {
            "format": 1,
            "values": {"token": {EMAIL_SECRET: {NAME_SECRET: tagged("set", [[1]])}}},
        },
    },
    {"sender": None, "kwargs": {"format": 1, "values": {EMAIL_SECRET: [{"$sb": 1}]}}},
    {"sender": None, "kwargs": tagged("enum", [NAME_SECRET, "GOLD"])},
    {"sender": None, "kwargs": tagged("enum", [f"{__name__}.Tier", NAME_SECRET])},
    {"sender": None, "kwargs": tagged("enum", [f"{__name__}.Tier", EMAIL_SECRET])},
    {"sender": None, "kwargs": tagged("dataclass", [NAME_SECRET, {}])},
    {"sender": None, "kwargs": tagged("dataclass", [f"{__name__}.Tier", {}])},
    {"sender": None, "kwargs": tagged("type", f"{NAME_SECRET}.{NAME_SECRET}")},
    {"sender": None, "kwargs": tagged("modelclass", NAME_SECRET)},
    {"sender": None, "kwargs": tagged("modelclass", f"testapp.{NAME_SECRET}")},
    {"sender": None, "kwargs": tagged("modelclass", EMAIL_SECRET)},
    {
        "sender": {"$sb": "modelclass", "v": f"{NAME_SECRET}.Order"},
        "kwargs": {"format": 1, "values": {}},
    },
    {"sender": {"$sb": "type", "v": NAME_SECRET}, "kwargs": tagged("int", "1")},
    {"sender": None, "kwargs": tagged("model", {**ORDER_REF, "db": NAME_SECRET})},
    {"sender": None, "kwargs": tagged("model", {**ORDER_REF, "pk": NAME_SECRET})},
    {"sender": None, "kwargs": tagged("model", {**ORDER_REF, "pk": EMAIL_SECRET})},
    {"sender": None, "kwargs": tagged("queryset", {**ORDER_SET, "pks": [NAME_SECRET]})},
    # A snapshot whose field refuses a value: Django's ValidationError quotes it.
    {"sender": None, "kwargs": snapshot(strings={"issued": NAME_SECRET})},
    {"sender": None, "kwargs": snapshot(strings={"reference": EMAIL_SECRET})},
    {"sender": None, "kwargs": snapshot(fields={"lines": NAME_SECRET})},
    {"sender": None, "kwargs": snapshot(fields={"settled": EMAIL_SECRET})},
    {"sender": None, "kwargs": snapshot(fields={NAME_SECRET: tagged("uuid", "x")})},
    {"sender": None, "kwargs": snapshot(fields={"amount": {NAME_SECRET: 1}})},
]


@secret_paths
@pytest.mark.parametrize("payload", MALFORMED)
def test_a_secret_is_kept_out_of_sight_when_a_payload_cannot_be_decoded(
    connect: Any, watched: Callable[[], None], payload: Any
) -> None:
    connect(guarded, accept, run="background")
    key = registry.receiver_key(accept)
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver=key, payload=payload)],
        using="default",
    )
    assert drain() == {Outcome.DEAD: 1}
    row = Delivery.objects.get()
    assert row.reason == "decode_error"
    # The error outlives an erased payload, so it must not quote it.
    assert not hidden(row.error), row.error
    assert ran == []
    watched()


@secret_paths
@pytest.mark.parametrize(
    "value",
    [Opaque(SECRET), [Opaque(SECRET)], {Opaque(SECRET): 1}, {"card": {Opaque(SECRET)}}],
    ids=["object", "in a list", "as a key", "in a set"],
)
def test_a_secret_is_kept_out_of_sight_when_the_codec_refuses_it(
    connect: Any, watched: Callable[[], None], value: object
) -> None:
    connect(guarded, accept, run="background")

    def send() -> None:
        try:
            with transaction.atomic():
                guarded.send(sender=None, token=value)
        except CodecError:
            # What a caller's logging (Django's for a 500, say) writes.
            logging.getLogger("tests.caller").exception("The send failed")
            raise

    with pytest.raises(CodecError) as refused:
        send()
    assert re.match(r"token\b", refused.value.argument or "")
    text = "".join(traceback.format_exception(refused.value))
    assert SECRET not in text
    assert SECRET in repr(value)  # the value did hold it
    assert not Delivery.objects.exists()
    watched()


@secret_paths
@pytest.mark.parametrize(
    "value",
    [
        {EMAIL_SECRET: Opaque("x")},
        {"emails": {EMAIL_SECRET: {1: "one"}}},
        {NAME_SECRET: [Opaque("x")]},
        [{EMAIL_SECRET: {NAME_SECRET: {Opaque("x")}}}],
        {"ok": 1, NAME_SECRET: {"token": Opaque(NAME_SECRET)}},
        {EMAIL_SECRET: mark_safe(NAME_SECRET)},
        {"cards": OrderedDict({NAME_SECRET: EMAIL_SECRET})},
    ],
    ids=[
        "e-mail key",
        "e-mail key, bad inner key",
        "name key",
        "nested keys",
        "both",
        "a name in a str subclass",
        "in a dict subclass",
    ],
)
def test_dict_keys_are_kept_out_of_sight_when_the_codec_refuses_a_value(
    connect: Any, watched: Callable[[], None], value: object
) -> None:
    # A dict key is data as much as its value is: the path to a value that
    # cannot travel says where it is by position, never by key.
    connect(guarded, accept, run="background")

    def send() -> None:
        try:
            guarded.send(sender=None, token=value)
        except CodecError:
            logging.getLogger("tests.caller").exception("The send failed")
            raise

    with pytest.raises(CodecError) as refused:
        send()
    assert re.match(r"token\b.*\[<key \d>\]", refused.value.argument or "")
    assert not hidden("".join(traceback.format_exception(refused.value)))
    assert not Delivery.objects.exists()
    watched()


def decimal_pk(text: str) -> dict[str, Any]:
    return tagged("model", {**ORDER_REF, "pk": {"$sb": "decimal", "v": text}})


# Rows of a few hundred bytes (or a few megabytes) whose numbers would take
# seconds to minutes to convert, holding the GIL: int(Decimal("1e300000")) is
# what Django runs on an integer pk.
COSTLY = {
    "a pk of 1e300000": decimal_pk("1e300000"),
    "a pk of 1e-300000": decimal_pk("1e-300000"),
    "a pk of 100000 digits": decimal_pk("9" * 100_000),
    "pks of 1e300000": tagged(
        "queryset", {**ORDER_SET, "pks": [{"$sb": "decimal", "v": "1e300000"}] * 5}
    ),
    "a decimal of a million digits": tagged("decimal", "9" * 1_000_000),
    "an int of a million hex digits": tagged("int", "f" * 1_000_000),
    "a float of a million digits": tagged("float", "1" * 1_000_000),
    "a snapshot's decimal text": snapshot(strings={"amount": "1e300000"}),
    "a snapshot's integer from a decimal": snapshot(
        fields={"lines": {"$sb": "decimal", "v": "1e300000"}}
    ),
}


@secret_paths
@pytest.mark.parametrize("kwargs", list(COSTLY.values()), ids=list(COSTLY))
def test_a_row_whose_numbers_cost_too_much_is_dead_at_once(
    connect: Any, watched: Callable[[], None], kwargs: dict[str, Any]
) -> None:
    connect(guarded, accept, run="background")
    key = registry.receiver_key(accept)
    payload = {"sender": None, "kwargs": kwargs}
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver=key, payload=payload)],
        using="default",
    )
    started = time.monotonic()
    assert drain() == {Outcome.DEAD: 1}
    assert time.monotonic() - started < 1.0
    row = Delivery.objects.get()
    assert (row.reason, row.attempt) == ("decode_error", 1)
    assert "out of bounds" in row.error or "too long" in row.error, row.error
    assert ran == []
    watched()
