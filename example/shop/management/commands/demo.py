"""``manage.py demo``: what each way of running a receiver does to a checkout.

Starts a ``manage.py signalbox worker`` process, posts scripted checkouts to
the shop's views (see :mod:`shop.scenarios`), stops the worker with SIGTERM,
then prints three sections and what they mean. ``--fast`` shortens the
simulated e-mail from 2 s to 0.2 s, so a test can run the whole demo in a few
seconds. The command fails if a scenario did not behave as its row expects.
"""

from __future__ import annotations

import asyncio
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)
from django.db import connection
from django.test import override_settings

from shop import effects, receivers
from shop.models import Order
from shop.scenarios import (
    ASYNC_CHECKOUTS,
    CHECKOUTS,
    AsyncResult,
    CheckoutResult,
    DeliveryRow,
    WebhookResult,
    run_async_checkouts,
    run_checkouts,
    run_webhook_checkout,
)
from shop.worker_process import WorkerProcess, refuse_other_workers
from signalbox.models import Delivery

MS = timedelta(milliseconds=1)
FAST_EMAIL_SECONDS = 0.2
FAST_SLOW_RECEIVER_MS = 100  # below the fast e-mail, above the 50 ms websocket push


@dataclass(frozen=True, slots=True)
class Background:
    """What the worker process did, besides the checkouts' own results."""

    command: str
    pid: int
    webhook: WebhookResult
    status: str
    """The output of ``manage.py signalbox status`` before the worker stopped."""
    exit_code: int
    """The worker's exit code after SIGTERM."""
    log: str
    """What the worker wrote to stdout and stderr."""
    emails: list[str]
    """The orders the worker sent an e-mail for."""

    def problems(self, checkouts: Sequence[CheckoutResult]) -> list[str]:
        """What went other than expected."""
        found = [self.webhook.problem()]
        if self.exit_code != 0:
            found.append(f"the worker exited {self.exit_code} after SIGTERM")
        committed = [
            f"S{number}"
            for number, result in enumerate(checkouts, 1)
            if result.scenario.background and not result.scenario.roll_back
        ]
        if self.emails != committed:
            found.append(
                f"the worker sent e-mails for {self.emails}, expected {committed}"
            )
        return [problem for problem in found if problem is not None]


class Command(BaseCommand):
    """Run the scripted checkouts and print what they measured."""

    help = (
        "Post scripted checkouts to the example shop and show what inline, "
        "on_commit, background and coroutine receivers, and send() versus "
        "asend(), do to them."
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
            with tempfile.TemporaryDirectory(prefix="shop-demo-") as folder:
                results = self.run_scenarios(seconds, Path(folder))
        checkouts, async_checkouts, background = results
        self.stdout.write(report(checkouts, async_checkouts, background, seconds))
        email_ms = seconds * 1000
        blocked_from_ms = email_ms / 2  # a tick half an e-mail late
        problems = [
            *(result.problem(email_ms) for result in checkouts),
            *(result.problem(blocked_from_ms) for result in async_checkouts),
            *background.problems(checkouts),
        ]
        unmet = [problem for problem in problems if problem is not None]
        if unmet:
            raise CommandError("Unexpected results:\n  " + "\n  ".join(unmet))

    def run_scenarios(
        self, seconds: float, folder: Path
    ) -> tuple[list[CheckoutResult], list[AsyncResult], Background]:
        """Run every scenario on an empty order table and outbox, saying which.

        The worker process starts first, so that it is up by the time the
        first background checkout commits, and stops last, with SIGTERM.
        """
        refuse_other_workers()  # before anything is deleted
        Order.objects.all().delete()
        Delivery.objects.all().delete()
        effects.clear()
        total = len(CHECKOUTS) + len(ASYNC_CHECKOUTS) + 1
        progress = Progress(self.stderr, total=total)
        with WorkerProcess(folder, email_seconds=seconds) as worker:
            self.stderr.write(
                f"Started `{worker.command}` (pid {worker.pid}). Running "
                f"{progress.total} checkouts; the simulated e-mail takes {seconds:g} s."
            )
            checkouts = run_checkouts(CHECKOUTS, progress, worker)
            async_checkouts = asyncio.run(
                run_async_checkouts(ASYNC_CHECKOUTS, progress)
            )
            progress("sync view, only the payment webhook (background, always fails)")
            webhook = run_webhook_checkout("B1", worker)
            status = StringIO()
            call_command("signalbox", "status", stdout=status)
            self.stderr.write(f"Stopping the worker (pid {worker.pid}) with SIGTERM.")
            exit_code = worker.stop()
            emails = sorted(
                {
                    effect.order
                    for effect in effects.read(worker.journal)
                    if effect.what == "e-mail sent"
                }
            )
            background = Background(
                command=worker.command,
                pid=worker.pid,
                webhook=webhook,
                status=status.getvalue().rstrip(),
                exit_code=exit_code,
                log=worker.output().rstrip(),
                emails=emails,
            )
        return checkouts, async_checkouts, background


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
    background: Background,
    seconds: float,
) -> str:
    """The whole printed report: three sections, footnotes and the explanation."""
    sync_table = table(
        [
            "e-mail receiver",
            "HTTP",
            "response",
            "row committed",
            "outbox rows",
            "e-mail sent",
            "sent by",
        ],
        [checkout_row(result) for result in checkouts],
        align="<>>>><<",
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
        "and send order_paid, with the e-mail receiver connected as each row says "
        "(background: a worker process sends it, and the demo waits for that), "
        "next to the audit line (inline) and the cache refresh (on_commit); the "
        "websocket push, a coroutine, is left to section 2. Times are from the "
        "start of the request."
    )
    async_intro = (
        "2. Async views, with the e-mail receiver connected inline, while a "
        "heartbeat coroutine ticks every 10 ms on the same event loop, standing "
        "in for the other requests that loop serves."
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
            *background_section(checkouts, background),
            "",
            wrap(explanation(seconds)),
            "",
        ]
    )


def background_section(
    checkouts: Sequence[CheckoutResult], background: Background
) -> list[str]:
    """Section 3: what the worker process did, from its rows and its log."""
    poll = settings.SIGNALBOX["POLL_SECONDS"]
    intro = (
        f'3. run="background": `{background.command}`, started by this demo '
        f"(pid {background.pid}) on the same SQLite file, runs the rows that "
        "checkouts commit to the outbox. On SQLite it polls for them, here "
        f"every {unbroken(f'{poll:g} s')}; PostgreSQL would wake "
        "it at the commit."
    )
    lines = [wrap(intro, indent="   ", first=""), ""]
    for number, result in enumerate(checkouts, 1):
        if result.scenario.background:
            lines += [*background_email(f"S{number}", result), ""]
    lines += [*webhook_lines(background.webhook), ""]
    lines.append("   manage.py signalbox status, before the worker stopped:")
    lines += indented(background.status, "     ")
    lines += [
        "",
        f"   The worker's output; after SIGTERM it exited with {background.exit_code}:",
        *indented(background.log, "     "),
    ]
    return lines


def background_email(number: str, result: CheckoutResult) -> list[str]:
    """The lines about one checkout with the e-mail connected run="background"."""
    rows = len(result.deliveries)
    response = unbroken(milliseconds(result.response_ms))
    head = (
        f"   E-mail, checkout {number} ({result.scenario.label}): the response "
        f"took {response} and committed {rows} outbox row{'' if rows == 1 else 's'}"
    )
    if result.scenario.roll_back:
        sent = (
            "no e-mail was sent"
            if result.email_ms is None
            else "yet an e-mail went out"
        )
        return [wrap(f"{head}; {sent}.", indent="     ", first="")]
    head = wrap(f"{head}.", indent="     ", first="")
    pairs = [("order row committed at", optional_ms(result.committed_ms))]
    latency = result.start_latency_ms
    pairs.append(
        (
            "the worker started it at",
            optional_ms(result.email_started_ms)
            + (
                f" ({milliseconds(latency)} after the commit)"
                if latency is not None
                else ""
            ),
        )
    )
    pairs.append(("and finished it at", optional_ms(result.email_ms)))
    pairs += [(f"delivery {row.id}", delivery_state(row)) for row in result.deliveries]
    return [head, *key_values(pairs)]


def webhook_lines(webhook: WebhookResult) -> list[str]:
    """The lines about the checkout whose only background receiver always fails."""
    options = receivers.WEBHOOK_OPTIONS
    backoff = options["backoff"]
    head = (
        f"   Payment webhook, checkout {webhook.number}, with only this receiver "
        f'connected: run="background", retries={options["retries"]}, a random '
        f"backoff of up to {unbroken(milliseconds(backoff.base / MS))} "
        f"after the first attempt, doubling each time, at most "
        f"{unbroken(milliseconds(backoff.cap / MS))}; the provider is "
        f"down. The response took {unbroken(milliseconds(webhook.response_ms))}."
    )
    pairs = [("order row committed at", optional_ms(webhook.committed_ms))]
    pairs.append(
        ("its attempts ran at", ", ".join(milliseconds(a) for a in webhook.attempts_ms))
    )
    for row in webhook.deliveries:
        pairs.append((f"delivery {row.id}", delivery_state(row)))
        pairs.append(("last line of its error", row.error))
    return [wrap(head, indent="     ", first=""), *key_values(pairs)]


def delivery_state(row: DeliveryRow) -> str:
    """A delivery's state, attempts and reason, in a few words."""
    text = f"{row.state} on attempt {row.attempt} of {row.max_attempts}"
    return f"{text}, reason {row.reason}" if row.reason else text


def key_values(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``key  value`` lines, indented, with the values aligned."""
    width = max(len(key) for key, _ in pairs)
    return [f"     {key:<{width}}  {value}" for key, value in pairs]


def indented(text: str, indent: str) -> list[str]:
    """The lines of ``text``, each indented by ``indent`` (blank ones left blank)."""
    return [indent + line if line.strip() else "" for line in text.splitlines()]


def optional_ms(value: float | None) -> str:
    """``value`` (in ms) as whole milliseconds, or "never"."""
    return "never" if value is None else milliseconds(value)


def checkout_row(result: CheckoutResult) -> list[str]:
    """One row of the sync table."""
    email = "never"
    if result.email_ms is not None:
        email = f"{milliseconds(result.email_ms)}, {result.email_timing}"
    return [
        result.scenario.label,
        str(result.status),
        milliseconds(result.response_ms),
        optional_ms(result.committed_ms),
        str(len(result.deliveries)),
        email,
        result.email_by or "-",
    ]


def async_row(result: AsyncResult) -> list[str]:
    """One row of the async table."""
    by = {True: "the event loop", False: "another thread", None: "-"}
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
    A quantity made with :func:`unbroken` stays on one line.
    """
    wrapped = textwrap.fill(
        text,
        width=79,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
    )
    return wrapped.replace(_UNBROKEN, " ")


_UNBROKEN = "\N{NO-BREAK SPACE}"  # textwrap breaks lines at ASCII whitespace only


def unbroken(text: str) -> str:
    """``text`` (say "42 ms") kept on one line by :func:`wrap`."""
    return text.replace(" ", _UNBROKEN)


def milliseconds(value: float) -> str:
    """``value`` (in ms) as a whole number of milliseconds."""
    return f"{value:.0f} ms"


def explanation(seconds: float) -> str:
    """The paragraph under the tables: what the numbers show, and what they do not."""
    return (
        f"Inline, the {unbroken(f'{seconds:g} s')} e-mail runs inside the "
        "transaction: the row "
        "is committed only after it (the transaction, and on SQLite the "
        "database's write lock, stay open all that time), the response waits "
        'for it, and a rolled-back order still gets its e-mail. With run="on_commit" '
        "the row is committed as soon as the inline receivers are done and a "
        "rolled-back order gets no e-mail, but the e-mail still runs in the "
        "request thread, after the commit and before the response, so the "
        "response is no faster; and if the process dies after the commit, the "
        'e-mail is lost. With run="background" the request only writes an '
        "outbox row in its own transaction and answers at once: the row is "
        "committed with the order or rolled back with it, so a rolled-back "
        "order writes no row and gets no e-mail, and a committed one keeps its "
        "row until a worker process has run the receiver, however long that "
        "takes and whatever happens to the web process meanwhile. A receiver "
        "that raises is retried with backoff, and after its last attempt kept "
        "as dead, with its reason and traceback, for `manage.py signalbox retry`. "
        "In an async view, await asend() runs the sync receivers in another "
        "thread: the response still waits for them, but the event loop keeps "
        "ticking, free to serve other requests. A plain send() runs them on the "
        "event loop's thread, stalling everything on that loop for as long as "
        "they take, and cannot run a coroutine receiver at all: it raises after "
        "the sync receivers have run."
    )
