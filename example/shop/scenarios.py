"""The demo's scripted scenarios: each posts one checkout and measures it.

A scenario is one row of data: which view, and how the receivers are
connected for that request, plus what must happen (the demo fails otherwise).
Sync checkouts are posted with :class:`~django.test.Client`, which runs the
view in the calling thread; async ones with :class:`~django.test.AsyncClient`,
which runs the view on the calling event loop, next to a :class:`Heartbeat`.
No server is needed. Times are ``time.perf_counter()`` readings, in ms from
just before the request; what the receivers did, and when, comes from
:mod:`shop.effects`.

Background receivers run in a real worker process (:mod:`shop.worker_process`);
a scenario that commits outbox rows waits until the worker has finished them,
then reads the rows and what the worker's receivers recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from shop.worker_process import WorkerProcess
from signalbox import Run
from signalbox.models import Delivery

Say = Callable[[str], None]
"""Where a runner says which scenario it starts."""

EmailTiming = Literal["before commit", "after commit", "order rolled back", "never"]
SentBy = Literal["request thread", "another thread", "worker process"]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One outbox row, as read once the worker had finished with it."""

    id: int
    receiver: str
    state: str
    attempt: int
    max_attempts: int
    reason: str
    error: str
    """The last line of the last error's traceback; empty if none."""

    @classmethod
    def read(cls, row: Delivery) -> DeliveryRow:
        """The parts of ``row`` the demo shows."""
        lines = row.error.strip().splitlines()
        return cls(
            id=row.pk,
            receiver=row.receiver,
            state=row.state,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            reason=row.reason,
            error=lines[-1] if lines else "",
        )


def last_delivery_id() -> int:
    """The highest outbox row id so far (0 for none): later rows are newer."""
    return Delivery.objects.order_by("-id").values_list("id", flat=True).first() or 0


def deliveries_after(last_id: int) -> list[Delivery]:
    """The outbox rows written since ``last_id`` was the last one."""
    return list(Delivery.objects.filter(id__gt=last_id).order_by("id"))


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

    @property
    def background(self) -> bool:
        """Whether the e-mail is left to the worker process."""
        return self.email_run == "background"

    @property
    def expect_rows(self) -> int:
        """How many outbox rows the checkout must commit."""
        return 1 if self.background and not self.roll_back else 0

    @property
    def expect_by(self) -> SentBy:
        """Who must send the e-mail, if it is sent."""
        return "worker process" if self.background else "request thread"


CHECKOUTS: Final = (
    Checkout("inline", roll_back=False, expect="before commit"),
    Checkout("inline", roll_back=True, expect="order rolled back"),
    Checkout("on_commit", roll_back=False, expect="after commit"),
    Checkout("on_commit", roll_back=True, expect="never"),
    Checkout("background", roll_back=False, expect="after commit"),
    Checkout("background", roll_back=True, expect="never"),
)


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What one sync checkout measured."""

    scenario: Checkout
    status: int
    response_ms: float
    committed_ms: float | None
    """When the order row was committed; None if it never was (rolled back)."""
    email_started_ms: float | None
    """When the e-mail receiver started; None if it did not."""
    email_ms: float | None
    """When the e-mail was sent; None if it was not.

    For a background e-mail that the checkout committed, after the worker
    finished it; otherwise by the time of the response.
    """
    email_by: SentBy | None
    """Who sent the e-mail; None if it was not sent."""
    deliveries: list[DeliveryRow]
    """The outbox rows the checkout committed, once the worker finished them."""

    @property
    def email_timing(self) -> EmailTiming:
        """When the e-mail went out, relative to the commit."""
        if self.email_ms is None:
            return "never"
        if self.committed_ms is None:
            return "order rolled back"
        return "before commit" if self.email_ms < self.committed_ms else "after commit"

    @property
    def start_latency_ms(self) -> float | None:
        """From the commit to the start of the e-mail; None unless both happened."""
        if self.committed_ms is None or self.email_started_ms is None:
            return None
        return self.email_started_ms - self.committed_ms

    def problem(self, email_ms: float) -> str | None:
        """What went other than expected, or None; the e-mail takes ``email_ms``."""
        scenario = self.scenario
        label = f"sync view, e-mail {scenario.label}"
        if self.email_timing != scenario.expect:
            return (
                f"{label}: e-mail {self.email_timing!r}, expected {scenario.expect!r}"
            )
        if self.email_by is not None and self.email_by != scenario.expect_by:
            return f"{label}: e-mail sent by the {self.email_by}"
        if len(self.deliveries) != scenario.expect_rows:
            return (
                f"{label}: {len(self.deliveries)} outbox rows, "
                f"expected {scenario.expect_rows}"
            )
        if not scenario.background or scenario.roll_back:
            return None
        if self.response_ms > email_ms / 2:
            return f"{label}: the response took {self.response_ms:.0f} ms"
        (row,) = self.deliveries
        if (row.state, row.attempt) != ("completed", 1):
            return f"{label}: delivery {row.state} on attempt {row.attempt}"
        return None


def run_checkouts(
    scenarios: Iterable[Checkout], say: Say, worker: WorkerProcess
) -> list[CheckoutResult]:
    """Run each sync checkout scenario in turn, with order numbers S1, S2, ..."""
    results = []
    for number, scenario in enumerate(scenarios, 1):
        say(f"sync view, e-mail {scenario.label}")
        results.append(run_checkout(scenario, f"S{number}", worker))
    return results


def run_checkout(
    scenario: Checkout, number: str, worker: WorkerProcess
) -> CheckoutResult:
    """Post order ``number`` to the sync checkout view and measure it.

    If the checkout committed outbox rows, wait for ``worker`` to finish them.
    """
    form = order_form(number, fail_after_signal=scenario.roll_back)
    if scenario.background:
        worker.wait_until_ready()
    last_id = last_delivery_id()
    with wired(email=scenario.email_run, webhook=False, websocket=False):
        start = time.perf_counter()
        response = Client().post(reverse("shop:checkout"), form)
        response_ms = elapsed_ms(start, time.perf_counter())
    rows = deliveries_after(last_id)
    if rows:
        worker.wait_until_finished([row.pk for row in rows], timeout=30)
        rows = deliveries_after(last_id)
    committed = effects.find("order committed", number)
    started = effects.find("e-mail started", number, journal=worker.journal)
    email = effects.find("e-mail sent", number, journal=worker.journal)
    return CheckoutResult(
        scenario=scenario,
        status=response.status_code,
        response_ms=response_ms,
        committed_ms=elapsed_ms(start, committed.at) if committed else None,
        email_started_ms=elapsed_ms(start, started.at) if started else None,
        email_ms=elapsed_ms(start, email.at) if email else None,
        email_by=sent_by(email) if email else None,
        deliveries=[DeliveryRow.read(row) for row in rows],
    )


def sent_by(effect: effects.Effect) -> SentBy:
    """Who did ``effect``: this thread (which ran the view), another, or the worker."""
    if effect.process != os.getpid():
        return "worker process"
    # The test client ran the view in this very thread.
    if effect.thread == threading.get_ident():
        return "request thread"
    return "another thread"


# -- a background receiver that fails -----------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What a checkout with only the failing payment webhook connected measured."""

    number: str
    status: int
    response_ms: float
    committed_ms: float | None
    attempts_ms: list[float]
    """When each attempt of the webhook ran."""
    deliveries: list[DeliveryRow]
    """The outbox rows the checkout committed, once the worker gave up on them."""

    def problem(self) -> str | None:
        """What went other than expected, or None."""
        label = "payment webhook"
        if self.status != 201:
            return f"{label}: HTTP {self.status}, expected 201"
        if len(self.deliveries) != 1:
            return f"{label}: {len(self.deliveries)} outbox rows, expected 1"
        (row,) = self.deliveries
        expected = receivers.WEBHOOK_OPTIONS["retries"]
        if (row.state, row.attempt, row.reason) != ("dead", expected, "max_attempts"):
            return (
                f"{label}: delivery {row.state} on attempt {row.attempt} "
                f"({row.reason or 'no reason'}), expected dead on attempt "
                f"{expected} (max_attempts)"
            )
        if len(self.attempts_ms) != expected:
            return f"{label}: it ran {len(self.attempts_ms)} times, expected {expected}"
        if receivers.ProviderDown.__name__ not in row.error:
            return f"{label}: the last error is {row.error!r}"
        return None


def run_webhook_checkout(number: str, worker: WorkerProcess) -> WebhookResult:
    """Post order ``number`` with only the payment webhook connected; wait till dead."""
    worker.wait_until_ready()
    last_id = last_delivery_id()
    with wired(email=None, webhook=True, websocket=False):
        start = time.perf_counter()
        response = Client().post(reverse("shop:checkout"), order_form(number))
        response_ms = elapsed_ms(start, time.perf_counter())
    rows = deliveries_after(last_id)
    worker.wait_until_finished([row.pk for row in rows], timeout=30)
    committed = effects.find("order committed", number)
    attempts = effects.find_all("webhook attempt", number, journal=worker.journal)
    return WebhookResult(
        number=number,
        status=response.status_code,
        response_ms=response_ms,
        committed_ms=elapsed_ms(start, committed.at) if committed else None,
        attempts_ms=[elapsed_ms(start, attempt.at) for attempt in attempts],
        deliveries=[DeliveryRow.read(row) for row in deliveries_after(last_id)],
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
    wiring = wired(email="inline", webhook=False, websocket=scenario.coroutine_receiver)
    with wiring:
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
def wired(*, email: Run | None, webhook: bool, websocket: bool) -> Iterator[None]:
    """Connect the receivers a scenario compares, in this process, for a block.

    The e-mail with ``run=email`` (None: not at all), the payment webhook and
    the websocket push or not. Afterwards each is connected as the shop
    connects it. The worker process is not rewired: it keeps the shop's
    background receivers connected, and runs whatever rows this process
    commits.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            connected_as(
                receivers.send_invoice_email, email, restore=receivers.EMAIL_RUN
            )
        )
        stack.enter_context(
            connected_as(
                receivers.post_payment_webhook,
                "background" if webhook else None,
                restore="background",
                **receivers.WEBHOOK_OPTIONS,
            )
        )
        stack.enter_context(
            connected_as(
                receivers.push_to_websocket,
                "inline" if websocket else None,
                restore="inline",
            )
        )
        yield


@contextlib.contextmanager
def connected_as(
    func: Callable[..., Any],
    run: Run | None,
    *,
    restore: Run,
    **background_options: Any,
) -> Iterator[None]:
    """Connect ``func`` to ``order_paid`` with ``run=`` (None: not at all) for a block.

    Afterwards it is connected with ``run=restore``, as the shop connects it.
    ``background_options`` go with every ``run="background"`` connection.
    """
    order_paid.disconnect(func)
    connect(func, run, background_options)
    try:
        yield
    finally:
        order_paid.disconnect(func)
        connect(func, restore, background_options)


def connect(func: Callable[..., Any], run: Run | None, options: dict[str, Any]) -> None:
    """Connect ``func`` to ``order_paid`` with ``run=`` (None: leave it out)."""
    if run is not None:
        signalbox.connect(
            order_paid, func, run=run, **(options if run == "background" else {})
        )


def order_form(number: str, *, fail_after_signal: bool = False) -> dict[str, str]:
    """The POST data of a checkout for order ``number``."""
    form = {"number": number, "total": "42.00"}
    if fail_after_signal:
        form["fail_after_signal"] = "on"
    return form


def elapsed_ms(start: float, end: float) -> float:
    """Milliseconds from ``start`` to ``end`` (two ``perf_counter()`` readings)."""
    return (end - start) * 1000
