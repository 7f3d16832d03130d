"""``manage.py demo``: what each way of running a receiver does to a checkout.

Posts scripted checkouts to the shop's views (see :mod:`shop.scenarios`),
then prints two tables and what they mean. ``--fast`` shortens the simulated
e-mail from 2 s to 0.2 s, so a test can run the whole demo in a few seconds.
The command fails if a scenario did not behave as its row expects.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)
from django.db import connection
from django.test import override_settings

from shop import effects
from shop.models import Order
from shop.scenarios import (
    ASYNC_CHECKOUTS,
    CHECKOUTS,
    AsyncResult,
    CheckoutResult,
    run_async_checkouts,
    run_checkouts,
)

FAST_EMAIL_SECONDS = 0.2
FAST_SLOW_RECEIVER_MS = 100  # below the fast e-mail, above the 50 ms websocket push


class Command(BaseCommand):
    """Run the scripted checkouts and print what they measured."""

    help = (
        "Post scripted checkouts to the example shop and show what inline, "
        "on_commit and coroutine receivers, and send() versus asend(), do to them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--fast``."""
        parser.add_argument(
            "--fast",
            action="store_true",
            help=f"simulate a {FAST_EMAIL_SECONDS} s e-mail instead of a "
            f"{settings.SHOP_EMAIL_SECONDS} s one (for tests)",
        )

    def handle(self, *args: Any, fast: bool, **options: Any) -> None:
        """Run every scenario, print the report, and fail on unmet expectations."""
        require_migrated()
        with override_settings(**(fast_settings() if fast else {})):
            seconds = float(settings.SHOP_EMAIL_SECONDS)
            checkouts, async_checkouts = self.run_scenarios(seconds)
        self.stdout.write(report(checkouts, async_checkouts, seconds))
        blocked_from_ms = seconds * 1000 / 2  # a tick half an e-mail late
        problems = [
            *(result.problem() for result in checkouts),
            *(result.problem(blocked_from_ms) for result in async_checkouts),
        ]
        unmet = [problem for problem in problems if problem is not None]
        if unmet:
            raise CommandError("Unexpected results:\n  " + "\n  ".join(unmet))

    def run_scenarios(
        self, seconds: float
    ) -> tuple[list[CheckoutResult], list[AsyncResult]]:
        """Run every scenario on an empty order table, saying which on stderr."""
        Order.objects.all().delete()
        effects.clear()
        progress = Progress(self.stderr, total=len(CHECKOUTS) + len(ASYNC_CHECKOUTS))
        self.stderr.write(
            f"Running {progress.total} checkouts; the simulated e-mail takes "
            f"{seconds:g} s."
        )
        checkouts = run_checkouts(CHECKOUTS, progress)
        async_checkouts = asyncio.run(run_async_checkouts(ASYNC_CHECKOUTS, progress))
        return checkouts, async_checkouts


class Progress:
    """Writes ``[n/total] what`` lines; signalbox's warnings appear under them."""

    def __init__(self, out: OutputWrapper, total: int) -> None:
        self.out = out
        self.total = total
        self.done = 0

    def __call__(self, what: str) -> None:
        """Say that the next step, ``what``, starts."""
        self.done += 1
        self.out.write(f"  [{self.done}/{self.total}] {what}")


def require_migrated() -> None:
    """Raise :class:`CommandError` unless the shop's table exists."""
    if Order._meta.db_table not in connection.introspection.table_names():
        raise CommandError("No order table yet: run `python manage.py migrate` first.")


def fast_settings() -> dict[str, Any]:
    """What ``--fast`` overrides: a short e-mail, and a slow limit below it."""
    return {
        "SHOP_EMAIL_SECONDS": FAST_EMAIL_SECONDS,
        "SIGNALBOX": {**settings.SIGNALBOX, "SLOW_RECEIVER_MS": FAST_SLOW_RECEIVER_MS},
    }


# -- the report ------------------------------------------------------------------


def report(
    checkouts: Sequence[CheckoutResult],
    async_checkouts: Sequence[AsyncResult],
    seconds: float,
) -> str:
    """The whole printed report: two tables, footnotes and the explanation."""
    sync_table = table(
        [
            "e-mail receiver",
            "HTTP",
            "response",
            "row committed",
            "e-mail sent",
            "thread",
        ],
        [checkout_row(result) for result in checkouts],
        align="<>>><<",
    )
    async_table = table(
        ["the view sends with", "HTTP", "response", "longest tick gap", "e-mail by"],
        [async_row(result) for result in async_checkouts],
        align="<>>><",
    )
    footnotes = [
        wrap(
            f"{type(result.error).__name__}: {result.error}",
            first="   * ",
            indent="     ",
        )
        for result in async_checkouts
        if result.error is not None
    ]
    sync_intro = (
        "1. Sync view, POST /checkout/: in transaction.atomic(), create the order "
        "and send order_paid, with the e-mail receiver connected as each row says. "
        "Times are from the start of the request."
    )
    async_intro = (
        "2. Async views, while a heartbeat coroutine ticks every 10 ms on the same "
        "event loop, standing in for the other requests that loop serves."
    )
    return "\n".join(
        [
            "",
            f"signalbox demo: checkout in the example shop; the e-mail takes "
            f"{seconds:g} s.",
            "",
            wrap(sync_intro, indent="   ", first=""),
            "",
            *sync_table,
            "",
            wrap(async_intro, indent="   ", first=""),
            "",
            *async_table,
            *footnotes,
            "",
            wrap(explanation(seconds)),
            "",
        ]
    )


def checkout_row(result: CheckoutResult) -> list[str]:
    """One row of the sync table."""
    email, by = "never", "-"
    if result.email_ms is not None:
        email = f"{milliseconds(result.email_ms)}, {result.email_timing}"
        by = "request" if result.email_in_request_thread else "another"
    committed = "never"
    if result.committed_ms is not None:
        committed = milliseconds(result.committed_ms)
    return [
        result.scenario.label,
        str(result.status),
        milliseconds(result.response_ms),
        committed,
        email,
        by,
    ]


def async_row(result: AsyncResult) -> list[str]:
    """One row of the async table."""
    by = {True: "the event loop", False: "a worker thread", None: "-"}
    return [
        result.scenario.label,
        f"{result.status}*" if result.error else str(result.status),
        milliseconds(result.response_ms),
        milliseconds(result.longest_gap_ms),
        by[result.email_on_event_loop],
    ]


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str
) -> list[str]:
    """The lines of a plain-text table; ``align`` has a ``<`` or ``>`` per column."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(align))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(width) if side == "<" else cell.rjust(width)
            for cell, width, side in zip(cells, widths, align, strict=True)
        )
        return "   " + "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def wrap(text: str, *, indent: str = "", first: str | None = None) -> str:
    """``text`` wrapped to 79 columns; lines after the first indented by ``indent``.

    The first line is indented by ``first`` if given, else by ``indent`` too.
    """
    return textwrap.fill(
        text,
        width=79,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
    )


def milliseconds(value: float) -> str:
    """``value`` (in ms) as a whole number of milliseconds."""
    return f"{value:.0f} ms"


def explanation(seconds: float) -> str:
    """The paragraph under the tables: what the numbers show, and what they do not."""
    return (
        f"Inline, the {seconds:g} s e-mail runs inside the transaction: the row "
        "is committed only after it (the transaction, and on SQLite the "
        "database's write lock, stay open all that time), and a rolled-back "
        'order still gets its e-mail. With run="on_commit" the row is committed '
        "as soon as the inline receivers are done and a rolled-back order gets "
        "no e-mail, but the e-mail still runs in the request thread, after the "
        "commit and before the response, so the response is no faster. Taking "
        'it off the request is what run="background" (coming next) is for: the '
        "request will write an outbox row in its transaction and a worker will "
        "send the e-mail. In an async view, await asend() runs the sync "
        "receivers in a worker thread: the response still waits for them, but "
        "the event loop keeps ticking, free to serve other requests. A plain "
        "send() runs them on the event loop's thread, stalling everything on "
        "that loop for as long as they take, and cannot run a coroutine receiver "
        "at all: it raises after the sync receivers have run."
    )
