"""signalbox's pytest plugin: the ``signalbox`` fixture and marker.

Installed with signalbox and registered through the ``pytest11`` entry point
(disable it with ``-p no:signalbox``). It is inert unless a test asks for it:
loading it needs no Django settings and configures nothing, and a test with
neither the fixture nor the marker runs exactly as without it (no send is
wrapped, no database touched).

::

    @pytest.mark.django_db
    def test_paying_sends_the_invoice(signalbox):
        order_paid.send(sender=Order, order=order)
        signalbox.drain()
        signalbox.assert_delivered(send_invoice_email, order=order)

    @pytest.mark.signalbox(background="inline")
    @pytest.mark.django_db(transaction=True)
    def test_inline(signalbox): ...

The fixture works with pytest-django's ``db`` (a transaction that never
commits: ``drain()`` runs the on-commit receivers too) and
``transactional_db`` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.dispatch import Signal as DjangoSignal

    from signalbox.testing import Capture, Ran, Reached, Sent

MARKER = (
    "signalbox(background='manual'|'inline'): record the test's sends in the "
    "`signalbox` fixture; with background='inline', background receivers run at "
    "the send (through the codec), else their rows wait for signalbox.drain()."
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``signalbox`` marker (so ``--strict-markers`` knows it)."""
    config.addinivalue_line("markers", MARKER)


class Kit:
    """What the ``signalbox`` fixture gives a test: its capture, and the kit.

    ``sent`` is every send so far; ``drain()``, ``assert_delivered()``,
    ``assert_not_delivered()`` and ``assert_sent()`` are
    :mod:`signalbox.testing`'s, on this test's capture; ``muted()`` and
    ``connected_to()`` are the module's own.
    """

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    @property
    def sent(self) -> list[Sent]:
        """Every send recorded during the test, in order."""
        return self.capture.sent

    @property
    def runs(self) -> list[Ran]:
        """Every delivery :meth:`drain` (or inline mode) ran during the test."""
        return self.capture.runs

    def drain(
        self, queue: str | None = None, using: str | None = None, **options: Any
    ) -> list[Ran]:
        """:func:`signalbox.testing.drain`; what ran is also kept in :attr:`runs`."""
        return self.capture.drain(queue, using, **options)

    def sends(self, signal: DjangoSignal | None = None) -> list[Sent]:
        """The sends recorded, of ``signal`` only when given."""
        return self.capture.sends(signal)

    def deliveries(self, receiver: Callable[..., Any] | str) -> list[Reached]:
        """What happened at ``receiver`` (a function or a key), send by send."""
        return self.capture.deliveries(receiver)

    def assert_delivered(
        self, receiver: Callable[..., Any] | str, /, **kwargs_subset: Any
    ) -> Reached:
        """:func:`signalbox.testing.assert_delivered` on this test's sends."""
        from signalbox import testing

        return testing.assert_delivered(receiver, self.capture, **kwargs_subset)

    def assert_not_delivered(
        self, receiver: Callable[..., Any] | str, /, **kwargs_subset: Any
    ) -> None:
        """:func:`signalbox.testing.assert_not_delivered` on this test's sends."""
        from signalbox import testing

        testing.assert_not_delivered(receiver, self.capture, **kwargs_subset)

    def assert_sent(self, signal: DjangoSignal, /, **kwargs_subset: Any) -> Sent:
        """:func:`signalbox.testing.assert_sent` on this test's sends."""
        from signalbox import testing

        return testing.assert_sent(signal, self.capture, **kwargs_subset)

    def describe(self) -> str:
        """Every send recorded, and what happened at each receiver."""
        from signalbox import testing

        return testing.describe(self.capture)

    @staticmethod
    def muted(signal: DjangoSignal) -> Any:
        """:func:`signalbox.testing.muted`."""
        from signalbox import testing

        return testing.muted(signal)

    @staticmethod
    def connected_to(
        receiver: Callable[..., Any], signal: DjangoSignal, **options: Any
    ) -> Any:
        """:func:`signalbox.testing.connected_to`."""
        from signalbox import testing

        return testing.connected_to(receiver, signal, **options)


@pytest.fixture
def signalbox(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """The test's sends, recorded, and the kit to drain and check them.

    Background receivers' rows wait for ``signalbox.drain()``, unless the
    test is marked ``@pytest.mark.signalbox(background="inline")``.
    """
    from signalbox.testing import capture

    background = _background(request.node)
    with capture(background=background, on_commit_at_exit=False) as recorded:
        yield Kit(recorded)


@pytest.fixture(autouse=True)
def _signalbox_marker(request: pytest.FixtureRequest) -> None:
    """Give a test marked ``@pytest.mark.signalbox`` the fixture, asked or not."""
    if request.node.get_closest_marker("signalbox") is not None:
        request.getfixturevalue("signalbox")


def _background(node: pytest.Item) -> Any:
    marker = node.get_closest_marker("signalbox")
    if marker is None:
        return "manual"
    if marker.args or set(marker.kwargs) - {"background"}:
        raise pytest.UsageError(
            f"{node.nodeid}: @pytest.mark.signalbox takes only "
            f"background='manual' or background='inline', not "
            f"{marker.args or ''}{marker.kwargs or ''}."
        )
    background = marker.kwargs.get("background", "manual")
    if background not in ("manual", "inline"):
        raise pytest.UsageError(
            f"{node.nodeid}: @pytest.mark.signalbox(background={background!r}): "
            f"use 'manual' (rows wait for signalbox.drain()) or 'inline'."
        )
    return background
