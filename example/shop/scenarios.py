"""The demo's scripted scenarios: each posts one checkout and measures it.

A scenario is one row of data: which view, and how the receivers are
connected for that request, plus what must happen (the demo fails otherwise).
Sync checkouts are posted with :class:`~django.test.Client`, which runs the
view in the calling thread; async ones with :class:`~django.test.AsyncClient`,
which runs the view on the calling event loop, next to a :class:`Heartbeat`.
No server is needed. Times are ``time.perf_counter()`` readings, in ms from
just before the request; what the receivers did, and when, comes from
:mod:`shop.effects`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from django.test import AsyncClient, Client
from django.urls import reverse

import signalbox
from shop import effects, receivers
from shop.signals import order_paid
from signalbox import Run

Say = Callable[[str], None]
"""Where a runner says which scenario it starts."""

EmailTiming = Literal["before commit", "after commit", "order rolled back", "never"]


# -- the sync view ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkout:
    """A POST to the sync checkout view, with the e-mail receiver connected ``run=``."""

    email_run: Run
    roll_back: bool
    expect: EmailTiming
    """When the e-mail must go out, relative to the commit."""

    @property
    def label(self) -> str:
        """The row's name in the table."""
        return f"{self.email_run}, rolled back" if self.roll_back else self.email_run


CHECKOUTS: Final = (
    Checkout("inline", roll_back=False, expect="before commit"),
    Checkout("inline", roll_back=True, expect="order rolled back"),
    Checkout("on_commit", roll_back=False, expect="after commit"),
    Checkout("on_commit", roll_back=True, expect="never"),
    # When run="background" ships, comparing it is one more row:
    # Checkout("background", roll_back=False, expect="after commit"),
)


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What one sync checkout measured."""

    scenario: Checkout
    status: int
    response_ms: float
    committed_ms: float | None
    """When the order row was committed; None if it never was (rolled back)."""
    email_ms: float | None
    """When the e-mail was sent; None if it was not (by the time of the response)."""
    email_in_request_thread: bool | None
    """Whether the e-mail was sent by the thread that ran the view; None if not sent."""

    @property
    def email_timing(self) -> EmailTiming:
        """When the e-mail went out, relative to the commit."""
        if self.email_ms is None:
            return "never"
        if self.committed_ms is None:
            return "order rolled back"
        return "before commit" if self.email_ms < self.committed_ms else "after commit"

    def problem(self) -> str | None:
        """What went other than expected, or None."""
        if self.email_timing == self.scenario.expect:
            return None
        return (
            f"sync view, e-mail {self.scenario.label}: e-mail "
            f"{self.email_timing!r}, expected {self.scenario.expect!r}"
        )


def run_checkouts(scenarios: Iterable[Checkout], say: Say) -> list[CheckoutResult]:
    """Run each sync checkout scenario in turn, with order numbers S1, S2, ..."""
    results = []
    for number, scenario in enumerate(scenarios, 1):
        say(f"sync view, e-mail {scenario.label}")
        results.append(run_checkout(scenario, f"S{number}"))
    return results


def run_checkout(scenario: Checkout, number: str) -> CheckoutResult:
    """Post order ``number`` to the sync checkout view and measure it."""
    form = order_form(number, fail_after_signal=scenario.roll_back)
    email_receiver = receivers.send_invoice_email
    with connected_as(email_receiver, scenario.email_run, restore=receivers.EMAIL_RUN):
        start = time.perf_counter()
        response = Client().post(reverse("shop:checkout"), form)
        response_ms = elapsed_ms(start, time.perf_counter())
    committed = effects.find("order committed", number)
    email = effects.find("e-mail sent", number)
    return CheckoutResult(
        scenario=scenario,
        status=response.status_code,
        response_ms=response_ms,
        committed_ms=elapsed_ms(start, committed.at) if committed else None,
        email_ms=elapsed_ms(start, email.at) if email else None,
        # The test client ran the view in this very thread.
        email_in_request_thread=email.thread == threading.get_ident()
        if email
        else None,
    )


# -- the async views -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AsyncCheckout:
    """A POST to an async checkout view, timed against a heartbeat on its loop."""

    label: str
    view: str
    """The URL name of the view."""
    coroutine_receiver: bool
    """Whether ``push_to_websocket`` (a coroutine) stays connected."""
    expect_status: int
    expect_blocked: bool
    """Whether the view must stall the event loop."""


ASYNC_CHECKOUTS: Final = (
    AsyncCheckout(
        "await order_paid.asend()",
        view="shop:checkout-async",
        coroutine_receiver=True,
        expect_status=201,
        expect_blocked=False,
    ),
    AsyncCheckout(
        "order_paid.send()",
        view="shop:checkout-async-send",
        coroutine_receiver=True,
        expect_status=500,
        expect_blocked=True,
    ),
    AsyncCheckout(
        "order_paid.send(), no coroutine receiver",
        view="shop:checkout-async-send",
        coroutine_receiver=False,
        expect_status=201,
        expect_blocked=True,
    ),
)


@dataclass(frozen=True, slots=True)
class AsyncResult:
    """What one async checkout measured."""

    scenario: AsyncCheckout
    status: int
    response_ms: float
    longest_gap_ms: float
    """The longest time between two heartbeat ticks during the request."""
    email_on_event_loop: bool | None
    """Whether the e-mail was sent on the event loop's thread; None if not sent."""
    error: BaseException | None
    """What the view raised, if anything."""

    def problem(self, blocked_from_ms: float) -> str | None:
        """What went other than expected, or None.

        The loop counts as blocked when a tick came ``blocked_from_ms`` late.
        """
        scenario = self.scenario
        if self.status != scenario.expect_status:
            return (
                f"async view, {scenario.label}: HTTP {self.status}, "
                f"expected {scenario.expect_status}"
            )
        if (self.longest_gap_ms >= blocked_from_ms) != scenario.expect_blocked:
            return (
                f"async view, {scenario.label}: longest tick gap "
                f"{self.longest_gap_ms:.0f} ms, expected the loop to be "
                f"{'blocked' if scenario.expect_blocked else 'free'}"
            )
        return None


async def run_async_checkouts(
    scenarios: Iterable[AsyncCheckout], say: Say
) -> list[AsyncResult]:
    """Run each async checkout scenario in turn, with order numbers A1, A2, ..."""
    results = []
    for number, scenario in enumerate(scenarios, 1):
        say(f"async view, {scenario.label}")
        results.append(await run_async_checkout(scenario, f"A{number}"))
    return results


async def run_async_checkout(scenario: AsyncCheckout, number: str) -> AsyncResult:
    """Post order ``number`` to an async checkout view and measure it.

    The request runs on this event loop, as it would under an ASGI server,
    next to a :class:`Heartbeat` standing in for the server's other requests.
    """
    client = AsyncClient(raise_request_exception=False)
    websocket: Run | None = "inline" if scenario.coroutine_receiver else None
    with connected_as(receivers.push_to_websocket, websocket, restore="inline"):
        async with Heartbeat() as heartbeat:
            start = time.perf_counter()
            response = await client.post(reverse(scenario.view), order_form(number))
            response_ms = elapsed_ms(start, time.perf_counter())
    email = effects.find("e-mail sent", number)
    exc_info = getattr(response, "exc_info", None)  # set by the test client
    return AsyncResult(
        scenario=scenario,
        status=response.status_code,
        response_ms=response_ms,
        longest_gap_ms=heartbeat.longest_gap * 1000,
        email_on_event_loop=email.on_event_loop if email else None,
        error=exc_info[1] if exc_info else None,
    )


class Heartbeat:
    """Ticks every ``interval`` seconds on the running loop, keeping the longest gap.

    On a free loop the gaps stay close to ``interval``. Code that blocks the
    loop (a sync call on its thread) delays the next tick, and the longest gap
    shows how long the loop's other work - other requests - had to wait.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.longest_gap = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._last = time.perf_counter()
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._tick()  # the time since the last tick counts too

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._tick()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest_gap = max(self.longest_gap, now - self._last)
        self._last = now


# -- helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def connected_as(
    func: Callable[..., Any], run: Run | None, *, restore: Run
) -> Iterator[None]:
    """Connect ``func`` to ``order_paid`` with ``run=`` (None: not at all) for a block.

    Afterwards it is connected with ``run=restore``, as the shop connects it.
    """
    order_paid.disconnect(func)
    if run is not None:
        signalbox.connect(order_paid, func, run=run)
    try:
        yield
    finally:
        order_paid.disconnect(func)
        signalbox.connect(order_paid, func, run=restore)


def order_form(number: str, *, fail_after_signal: bool = False) -> dict[str, str]:
    """The POST data of a checkout for order ``number``."""
    form = {"number": number, "total": "42.00"}
    if fail_after_signal:
        form["fail_after_signal"] = "on"
    return form


def elapsed_ms(start: float, end: float) -> float:
    """Milliseconds from ``start`` to ``end`` (two ``perf_counter()`` readings)."""
    return (end - start) * 1000
