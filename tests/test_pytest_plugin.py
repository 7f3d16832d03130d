"""signalbox.testing's pytest plugin, run by pytest in a project of its own.

Each test writes a tiny Django project (settings, an app with a model and a
background receiver, a test file) and runs pytest on it in a subprocess with
the plugin module loaded by ``-p``: the virtualenvs install signalbox
editable from one checkout, whose entry point may not be this tree's (the
last test checks the entry point names the module).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
# -p no:signalbox first: where the installed entry point already loaded the
# plugin under its name, loading it again under the module's would clash.
PLUGIN = ["-p", "no:signalbox", "-p", "signalbox.testing.pytest_plugin"]

PROJECT = {
    "kit_settings.py": """
        SECRET_KEY = "plugin-tests-only"
        USE_TZ = True
        INSTALLED_APPS = ["django.contrib.contenttypes", "signalbox", "kitapp"]
        DATABASES = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "kit.sqlite3"}
        }
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    """,
    "kitapp/__init__.py": "",
    "kitapp/models.py": """
        from django.db import models

        class Note(models.Model):
            text = models.CharField(max_length=50)
    """,
    "kitapp/receivers.py": """
        import signalbox
        from kitapp.models import Note

        order_paid = signalbox.Signal()

        @signalbox.receiver(order_paid, run="background")
        def write_note(sender, number, **kwargs):
            Note.objects.create(text=number)

        order_refunded = signalbox.Signal()

        @signalbox.receiver(order_refunded, run="on_commit")
        def broken(sender, **kwargs):
            raise RuntimeError("an on-commit receiver the test never drained")
    """,
}

TESTS = """
    import pytest
    from django.db import transaction

    from kitapp.models import Note
    from kitapp.receivers import order_paid, write_note


    @pytest.mark.django_db
    def test_fixture_with_db(signalbox):
        with transaction.atomic():
            order_paid.send(sender=None, number="A1")
        assert not Note.objects.exists()
        [ran] = signalbox.drain()
        assert Note.objects.get().text == "A1"
        signalbox.assert_delivered(write_note, number="A1")
        assert len(signalbox.sent) == 1 and signalbox.runs == [ran]


    @pytest.mark.django_db(transaction=True)
    def test_fixture_with_transactional_db(signalbox):
        with transaction.atomic():
            order_paid.send(sender=None, number="A2")
        signalbox.drain()
        assert Note.objects.get().text == "A2"


    @pytest.mark.signalbox(background="inline")
    @pytest.mark.django_db
    def test_the_marker_runs_background_receivers_inline():
        order_paid.send(sender=None, number="B1")
        assert Note.objects.get().text == "B1"


    @pytest.mark.signalbox(background="manual")
    @pytest.mark.django_db
    def test_manual_leaves_rows_for_drain(signalbox):
        order_paid.send(sender=None, number="B2")
        assert not Note.objects.exists()
        signalbox.assert_sent(order_paid, number="B2")


    @pytest.mark.django_db
    def test_the_teardown_runs_no_receiver(signalbox):
        from kitapp.receivers import order_refunded

        order_refunded.send(sender=None)


    @pytest.mark.django_db
    def test_a_failed_assertion_says_what_was_sent(signalbox):
        order_paid.send(sender=None, number="C1")
        signalbox.assert_delivered(write_note, number="C2")
"""


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    pytester.makepyfile(
        **{name.replace(".py", ""): text for name, text in PROJECT.items()}
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "kit_settings")
    monkeypatch.delenv("SIGNALBOX_TEST_DB", raising=False)
    return pytester


def test_the_fixture_and_marker_work_with_db_and_transactional_db(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_kit=TESTS)
    result = project.runpytest_subprocess(*PLUGIN, "-p", "django", "--strict-markers")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: assert_delivered(kitapp.receivers.write_note, "
            "number='C2') failed: it was reached once, with other arguments.",
            "*1 send(s) recorded:",
            "*1. kitapp.receivers.order_paid(sender=None, number='C1')",
            "*kitapp.receivers.write_note (run='background'): written to the outbox "
            "as delivery 1",
        ]
    )


def test_a_marker_with_a_wrong_mode_says_which_modes_exist(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_kit="""
            import pytest

            @pytest.mark.signalbox(background="eager")
            def test_marked():
                pass
        """
    )
    result = project.runpytest_subprocess(*PLUGIN, "-p", "django")
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.signalbox(background='eager'): use 'manual'*or 'inline'."]
    )
    assert result.ret != 0


def test_the_plugin_is_inert_unless_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Django settings at all, and no pytest-django: a project's tests that
    # never ask for the kit must not notice it.
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile(
        test_plain="""
            from django.conf import settings
            from django.dispatch import Signal

            def test_plain():
                assert not settings.configured
                assert Signal.send.__module__ == "django.dispatch.dispatcher"
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:django")
    result.assert_outcomes(passed=1)


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry_points = project["project"]["entry-points"]["pytest11"]
    assert entry_points == {"signalbox": "signalbox.testing.pytest_plugin"}
    from signalbox.testing import pytest_plugin

    assert callable(pytest_plugin.signalbox)
    assert callable(pytest_plugin.pytest_configure)
