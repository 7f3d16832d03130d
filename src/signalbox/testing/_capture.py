"""``capture()`` and ``run_background_inline``: the kit's context managers.

While a capture is open, the ``send`` family and ``_live_receivers`` of
Django's ``Signal`` and of :class:`signalbox.Signal`, and
``signalbox.outbox.enqueue``, are wrapped (:mod:`._wrapping`): each send of a
signalbox signal, or of any signal signalbox has a receiver on, becomes a
:class:`~._records.Sent`, and each receiver it reached a
:class:`~._records.Reached`. Responses are handed back unwrapped, so
``send()`` returns what it always returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, ContextDecorator
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.db import connections
from django.dispatch import Signal as DjangoSignal

from signalbox.testing import _drain, _wrapping
from signalbox.testing._records import Background, Reached, Sent

_F = TypeVar("_F", bound=Callable[..., Any])


class _Decorator(ContextDecorator):
    """A context manager that decorates coroutine functions too (Django's async
    test methods): ContextDecorator alone would leave the block before the
    coroutine ran, and the test would pass without running."""

    def __call__(self, func: _F) -> _F:
        if not iscoroutinefunction(func):
            return super().__call__(func)

        @functools.wraps(func)
        async def inner(*args: Any, **kwargs: Any) -> Any:
            with cast("AbstractContextManager[Any]", self._recreate_cm()):
                return await func(*args, **kwargs)

        return cast("_F", inner)


class Capture(_Decorator):
    """A record of the sends made while it is open (see :func:`capture`)."""

    def __init__(
        self, *, background: Background = "manual", on_commit_at_exit: bool = True
    ) -> None:
        if background not in ("manual", "inline"):
            raise ValueError(
                f"background={background!r}: use 'manual' (rows wait for drain()) "
                f"or 'inline' (background receivers run at the send)."
            )
        self.background = background
        self.on_commit_at_exit = on_commit_at_exit
        self.sent: list[Sent] = []
        """Every send recorded, in order."""
        self.runs: list[_drain.Ran] = []
        """Every delivery this capture's :meth:`drain` (or inline mode) ran."""
        self._waiting_before: dict[str, list[object]] = {}

    def __enter__(self) -> Capture:
        self.sent, self.runs = [], []
        self._waiting_before = {
            alias: _drain.pending_on_commit(alias) for alias in connections
        }
        _wrapping.open_capture(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _wrapping.close_capture(self)
        if exc_info[0] is None and self.on_commit_at_exit:
            # What captureOnCommitCallbacks(execute=True) does: under a
            # TestCase the on-commit receivers sent in the block run now.
            for alias, before in self._waiting_before.items():
                _drain.run_on_commit(alias, before=before, raise_errors=True)

    def sends(self, signal: DjangoSignal | None = None) -> list[Sent]:
        """The sends recorded, of ``signal`` only when given."""
        return [each for each in self.sent if signal is None or each.signal is signal]

    def deliveries(self, receiver: Callable[..., Any] | str) -> list[Reached]:
        """What happened at ``receiver`` (a function or a key), send by send."""
        found = (each.reached(receiver) for each in self.sent)
        return [reached for reached in found if reached is not None]

    def drain(
        self, queue: str | None = None, using: str | None = None, **options: Any
    ) -> list[_drain.Ran]:
        """:func:`signalbox.testing.drain`, remembering what ran in :attr:`runs`."""
        ran = _drain.drain(queue, using, **options)
        self.runs.extend(ran)
        return ran


def capture(
    *, background: Background = "manual", on_commit_at_exit: bool = True
) -> Capture:
    """Record every send while the block runs; use as ``with capture() as sent:``.

    Records each send of a :class:`signalbox.Signal`, and each send of any
    other signal that reached a receiver while signalbox has one on it: the
    signal, sender and keyword arguments (:class:`Sent`), and for each
    receiver reached its mode and what happened (:class:`Reached`: ran,
    raised, waiting for the commit, or written to the outbox with its
    delivery id). Sends behave exactly as without it. On a clean exit inside
    a ``TestCase`` (whose transaction never commits), the on-commit
    receivers sent in the block run, as Django's
    ``captureOnCommitCallbacks(execute=True)`` runs callbacks (unless
    ``on_commit_at_exit=False``: the pytest fixture's capture ends in the
    test's teardown, no place to run receivers; ``drain()`` runs them).

    ``background="inline"`` also runs each background delivery at once,
    right after the send that wrote it, through the codec and the worker's
    runner (see :func:`run_background_inline`). Captures nest; each records
    every send made while it is open. Works as a decorator too.
    """
    return Capture(background=background, on_commit_at_exit=on_commit_at_exit)


class run_background_inline(_Decorator):
    """Run background receivers at the send, through the codec round trip.

    As a decorator (``@run_background_inline``, with or without brackets) or
    a context manager: while it is active, each background delivery a send
    writes is run right after that send, in the sending thread, exactly as
    :func:`drain` runs it: its row is claimed, its arguments decoded from the
    JSON the send encoded, the receiver called by the worker's runner, the
    outcome recorded on the row. An argument that cannot travel still fails
    at the send. A receiver's exception propagates from the ``send()``.
    Unlike a worker, it runs before the sender's transaction commits (a
    rollback then undoes its database writes, not what else it did): test
    commit and rollback behaviour with :func:`drain` instead.
    """

    def __new__(cls, func: Callable[..., Any] | None = None) -> Any:
        made = super().__new__(cls)
        made._captures = []
        if func is not None:  # @run_background_inline, without brackets
            return made(func)
        return made

    _captures: list[Capture]

    def __init__(self, func: Callable[..., Any] | None = None) -> None:
        """``func``: the function decorated without brackets (else None)."""

    def __enter__(self) -> Capture:
        inline = Capture(background="inline")
        self._captures.append(inline)
        return inline.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._captures.pop().__exit__(*exc_info)


def current() -> Capture | None:
    """The innermost capture open now, or None."""
    found = _wrapping.innermost()
    return found if isinstance(found, Capture) else None
