"""``manage.py signalbox <subcommand>``: signalbox's one command-line entry point.

``list [--json]``
    Every signal that has receivers, with each receiver's key, mode, sender
    filter and ``file:line``.
``worker [--queues a,b] [--concurrency N] [--burst] [--max-deliveries N] [--relay]``
    Run background receivers from the outbox (``--relay``: and relay, below).
``relay [--once]``
    Hand to Celery, RQ, … the deliveries their engines do not have yet:
    those a process could not hand over, and retries once due.
``status [--json]``
    Deliveries per queue and receiver, by state, with the oldest waiting row's
    age, the keys no running worker knows, and the engine queues whose
    handed-over rows nobody started.
``health [--json] [--max-wait S] [--max-dead N] [--dead-window S]``
    OK or FAIL per check, with its figure (:mod:`signalbox.health`); status 1 on a FAIL.
``retry [ids ...] [--dead] [--receiver KEY]``
    Make dead deliveries available again, with fresh attempts. Each named id
    that could not be retried is listed with the reason, and the command then
    exits non-zero.
``doctor [--json] [--fail-on warning|error] [--modules a,b]``
    What makes signals slow or fragile here, each finding with its stable id
    and fix; exits 1 on a finding at or above ``--fail-on``.
``prune``
    Delete completed and dead deliveries older than their retention, and
    erase the payloads of dead deliveries older than theirs.

Every subcommand takes Django's common options (``-v``, ``--settings``,
``--pythonpath``, ``--traceback``, ``--no-color``, ``--force-color``,
``--skip-checks``) after its name as well as before it. ``-v`` sets the level
of the ``signalbox`` loggers (0 warnings, 2 info, 3 debug), which is what a
worker or a relay has to say.
"""

from __future__ import annotations

import _thread
import json
import signal
import socket
import threading
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q
from django.utils.translation import ngettext

from signalbox import conf, doctor, engines, health, inventory, outbox, status
from signalbox.engines.relay import Relay
from signalbox.management._options import common_options, logging_at, positive
from signalbox.models import Delivery
from signalbox.worker import DEFAULT_CONCURRENCY, Worker, install_signal_handlers


class Command(BaseCommand):
    help = "Inspect and run signalbox: `manage.py signalbox <subcommand> --help`."

    def add_arguments(self, parser: CommandParser) -> None:
        common = common_options(parser)
        subcommands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="subcommand"
        )

        def add(name: str, help: str) -> CommandParser:
            return subcommands.add_parser(
                name, help=help, parents=[common], formatter_class=DjangoHelpFormatter
            )

        listing = add("list", "Every signal that has receivers, and how each one runs.")
        listing.add_argument("--json", action="store_true", help="Print JSON.")

        worker = add("worker", "Run background receivers.")
        worker.add_argument(
            "--queues", default="default", help="Comma-separated queues."
        )
        worker.add_argument("--concurrency", type=positive, default=DEFAULT_CONCURRENCY)
        worker.add_argument(
            "--burst", action="store_true", help="Exit 0 once nothing is due."
        )
        worker.add_argument("--max-deliveries", type=positive, default=None)
        worker.add_argument("--database", default=DEFAULT_DB_ALIAS)
        worker.add_argument(
            "--relay", action="store_true", help="Also run the relay (see relay)."
        )

        relay = add("relay", "Hand engines the deliveries they do not have yet.")
        relay.add_argument("--once", action="store_true", help="One pass, then exit.")
        relay.add_argument("--database", default=DEFAULT_DB_ALIAS)

        report = add("status", "Deliveries by state.")
        report.add_argument("--json", action="store_true", help="Print JSON.")
        report.add_argument("--database", default=DEFAULT_DB_ALIAS)

        health.add_options(add("health", "Check the outbox; exit 1 on a failure."))

        retry = add("retry", "Retry dead deliveries.")
        retry.add_argument("ids", nargs="*", type=int, help="Delivery ids.")
        retry.add_argument("--dead", action="store_true", help="Every dead delivery.")
        retry.add_argument("--receiver", help="Dead deliveries of this receiver key.")
        retry.add_argument("--database", default=DEFAULT_DB_ALIAS)

        doctor.add_arguments(add("doctor", "What makes signals slow or fragile."))

        prune = add("prune", "Delete old finished deliveries; erase old dead payloads.")
        prune.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        with logging_at(options["verbosity"]):
            getattr(self, f"_{options['subcommand']}")(options)

    def _list(self, options: dict[str, Any]) -> None:
        listings = inventory.connected_receivers()
        if options["json"]:
            self.stdout.write(
                json.dumps([item.as_dict() for item in listings], indent=2)
            )
            return
        for listing in listings:
            self.stdout.write(self.style.MIGRATE_HEADING(listing.signal))
            width = max(len(r.key) for r in listing.receivers)
            modes = max(10, *(len(r.mode) for r in listing.receivers))
            for r in listing.receivers:
                self.stdout.write(
                    f"  {r.mode:<{modes}} {r.key:<{width}}  "
                    f"sender={r.sender or '*':<20} {r.location}"
                )
                if r.untravelled:
                    self.stdout.write(
                        self.style.WARNING(
                            f"    cannot send {', '.join(r.untravelled)} to it: "
                            f"give it prepare= or exclude= (signalbox.W010)"
                        )
                    )
        total = sum(len(listing.receivers) for listing in listings)
        receivers = ngettext("%(count)d receiver", "%(count)d receivers", total)
        signals = ngettext("%(count)d signal", "%(count)d signals", len(listings))
        self.stdout.write(
            f"\n{receivers % {'count': total}} on {signals % {'count': len(listings)}}."
        )

    def _worker(self, options: dict[str, Any]) -> None:
        worker = Worker(
            queues=[q for q in options["queues"].split(",") if q],
            concurrency=options["concurrency"],
            burst=options["burst"],
            max_deliveries=options["max_deliveries"],
            using=options["database"],
            engines=engines.aliases(embedded=True),
            hint=engines.worker_hint,
        )
        install_signal_handlers(worker)
        relay = Relay(using=options["database"]) if options["relay"] else None
        if relay is not None:
            threading.Thread(target=relay.run, name="signalbox-relay").start()
        try:
            counts = worker.run()
        finally:
            if relay is not None:
                relay.stop()
        summary = ", ".join(f"{n} {o.value}" for o, n in counts.by_outcome.items())
        self.stdout.write(f"Worker stopped: {summary or 'nothing ran'}.")
        for line in _left_to_others(worker):
            self.stdout.write(line)

    def _relay(self, options: dict[str, Any]) -> None:
        if options["once"]:
            # One record per host, however often cron runs it: its heartbeat
            # says a relay runs here.
            name = f"{outbox.RELAY_PREFIX}{socket.gethostname()}:once"
            relay = Relay(using=options["database"], name=name)
            count = relay.run_once()
            handed = ngettext(
                "Handed over %(count)d delivery.",
                "Handed over %(count)d deliveries.",
                count,
            )
            self.stdout.write(handed % {"count": count})
            return
        relay = Relay(using=options["database"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Stopping takes the lock of the event the relay sleeps on, which
            # the interrupted main thread may hold: a thread of its own takes
            # it once the main thread lets go (as the worker's handler does).
            signal.signal(signum, lambda *_: _thread.start_new_thread(relay.stop, ()))
        relay.run()
        self.stdout.write("Relay stopped.")

    def _status(self, options: dict[str, Any]) -> None:
        report = status.report(using=options["database"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
            return
        self.stdout.write(report.as_text())

    def _health(self, options: dict[str, Any]) -> None:
        verdict = health.check(using=options["database"], limits=health.limits(options))
        self.stdout.write(verdict.as_json() if options["json"] else verdict.as_text())
        if not verdict.healthy:
            raise CommandError(f"Unhealthy: {', '.join(verdict.failed)}.")

    def _retry(self, options: dict[str, Any]) -> None:
        ids, receiver = options["ids"], options["receiver"]
        if not (ids or options["dead"] or receiver):
            raise CommandError("Name delivery ids, or use --dead or --receiver KEY.")
        if ids and receiver:
            raise CommandError(
                "Name delivery ids or --receiver KEY, not both: ids already say "
                "which deliveries."
            )
        if ids:
            self._retry_ids(ids, using=options["database"])
        else:
            self._retry_matching(receiver, using=options["database"])

    def _retry_ids(self, ids: list[int], *, using: str) -> None:
        """Retry the named dead deliveries; fail naming each id left alone, and why.

        Some ids retried and some not is an error too: whoever named them
        expected all of them to run again.
        """
        done = outbox.retry_dead_ids(ids, using=using)
        if done.retried or not done.refused:  # "0 … available" only says no
            self._say_available(len(done.retried))
        if not done.refused:
            return
        reasons = dict.fromkeys(done.missing, "no such delivery")
        reasons |= {
            pk: f"{state}, not dead (only dead deliveries are retried)"
            for pk, state in done.not_dead.items()
        }
        reasons |= dict.fromkeys(
            done.erased, "dead, but its payload was erased: it cannot run again"
        )
        named = done.refused + len(done.retried)
        heading = ngettext(
            "%(refused)d of %(named)d named delivery was not retried:",
            "%(refused)d of %(named)d named deliveries were not retried:",
            named,
        ) % {"refused": done.refused, "named": named}
        lines = [f"  {pk}: {reasons[pk]}" for pk in sorted(reasons)]
        raise CommandError("\n".join([heading, *lines]))

    def _retry_matching(self, receiver: str | None, *, using: str) -> None:
        """Retry every dead delivery (of ``receiver``, when given).

        Nothing dead is no error (what was asked for holds), but a receiver
        key no delivery has is: it is most likely mistyped.
        """
        which = Q(receiver=receiver) if receiver else Q()
        if receiver and not Delivery.objects.using(using).filter(which).exists():
            raise CommandError(
                f"No delivery has the receiver key {receiver!r}; `signalbox "
                "status` lists the keys of the deliveries there are."
            )
        self._say_available(outbox.retry_dead(which, using=using))
        erased = (
            Delivery.objects.using(using)
            .dead()
            .filter(which, payload_erased_at__isnull=False)
            .count()
        )
        if erased:
            left = ngettext(
                "%(count)d dead delivery was left alone: its payload was erased, "
                "so it cannot run again.",
                "%(count)d dead deliveries were left alone: their payloads were "
                "erased, so they cannot run again.",
                erased,
            )
            self.stdout.write(left % {"count": erased})

    def _say_available(self, count: int) -> None:
        available = ngettext(
            "%(count)d dead delivery is available again.",
            "%(count)d dead deliveries are available again.",
            count,
        )
        self.stdout.write(available % {"count": count})

    def _doctor(self, options: dict[str, Any]) -> None:
        report, failed = doctor.command_report(options)
        self.stdout.write(report)
        if failed:
            raise CommandError(failed, returncode=1)

    def _prune(self, options: dict[str, Any]) -> None:
        settings = conf.get()
        pruned = outbox.prune(
            completed=settings.completed_retention,
            dead=settings.dead_retention,
            dead_payload=settings.dead_payload_retention,
            using=options["database"],
        )
        completed = ngettext(
            "Deleted %(count)d completed delivery",
            "Deleted %(count)d completed deliveries",
            pruned.completed,
        ) % {"count": pruned.completed}
        dead = ngettext(
            "%(count)d dead delivery", "%(count)d dead deliveries", pruned.dead
        ) % {"count": pruned.dead}
        erased = ngettext(
            "erased the payload of %(count)d dead delivery (its row is kept)",
            "erased the payloads of %(count)d dead deliveries (their rows are kept)",
            pruned.erased,
        ) % {"count": pruned.erased}
        self.stdout.write(f"{completed} and {dead}; {erased}.")


def _left_to_others(worker: Worker) -> list[str]:
    """What is due that ``worker`` does not run (another engine's rows, other
    queues'), with how to run it: so that "nothing ran" does not read as
    "nothing waits"."""
    try:
        waiting = outbox.due_elsewhere(
            engines=worker.engines,
            queues=worker.queues,
            using=worker.using,
        )
    except Exception:  # the database went away: there is nothing to add
        return []
    lines = []
    for each in waiting:
        where, hint = engines.engine_queue(each.engine, each.queue)
        due = ngettext(
            "%d due delivery waits", "%d due deliveries wait", each.count
        ) % (each.count,)
        lines.append(f"{due} for {where}, not run by this worker: start {hint}.")
    return lines
