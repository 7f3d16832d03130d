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
    age, and the keys no running worker knows.
``retry [ids ...] [--dead] [--receiver KEY]``
    Make dead deliveries available again, with fresh attempts.
``prune``
    Delete completed and dead deliveries older than their retention, and
    erase the payloads of dead deliveries older than theirs.
"""

from __future__ import annotations

import _thread
import json
import signal
import socket
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from signalbox import conf, outbox
from signalbox.engines.relay import Relay
from signalbox.observe import inventory, status
from signalbox.worker import Worker, install_signal_handlers


class Command(BaseCommand):
    help = "Inspect and run signalbox: `manage.py signalbox <subcommand> --help`."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="subcommand"
        )
        listing = subcommands.add_parser(
            "list", help="Every signal that has receivers, and how each one runs."
        )
        listing.add_argument("--json", action="store_true", help="Print JSON.")

        worker = subcommands.add_parser("worker", help="Run background receivers.")
        worker.add_argument(
            "--queues", default="default", help="Comma-separated queues."
        )
        worker.add_argument("--concurrency", type=_positive, default=4)
        worker.add_argument(
            "--burst", action="store_true", help="Exit 0 once nothing is due."
        )
        worker.add_argument("--max-deliveries", type=_positive, default=None)
        worker.add_argument("--database", default=DEFAULT_DB_ALIAS)
        worker.add_argument(
            "--relay", action="store_true", help="Also run the relay (see relay)."
        )

        relay = subcommands.add_parser(
            "relay", help="Hand engines the deliveries they do not have yet."
        )
        relay.add_argument("--once", action="store_true", help="One pass, then exit.")
        relay.add_argument("--database", default=DEFAULT_DB_ALIAS)

        report = subcommands.add_parser("status", help="Deliveries by state.")
        report.add_argument("--json", action="store_true", help="Print JSON.")
        report.add_argument("--database", default=DEFAULT_DB_ALIAS)

        retry = subcommands.add_parser("retry", help="Retry dead deliveries.")
        retry.add_argument("ids", nargs="*", type=int, help="Delivery ids.")
        retry.add_argument("--dead", action="store_true", help="Every dead delivery.")
        retry.add_argument("--receiver", help="Dead deliveries of this receiver key.")
        retry.add_argument("--database", default=DEFAULT_DB_ALIAS)

        prune = subcommands.add_parser(
            "prune", help="Delete old finished deliveries; erase old dead payloads."
        )
        prune.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
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
            for r in listing.receivers:
                self.stdout.write(
                    f"  {r.run:<10} {r.key:<{width}}  "
                    f"sender={r.sender or '*':<20} {r.location}"
                )
        total = sum(len(listing.receivers) for listing in listings)
        self.stdout.write(f"\n{total} receivers on {len(listings)} signals.")

    def _worker(self, options: dict[str, Any]) -> None:
        worker = Worker(
            queues=[q for q in options["queues"].split(",") if q],
            concurrency=options["concurrency"],
            burst=options["burst"],
            max_deliveries=options["max_deliveries"],
            using=options["database"],
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

    def _relay(self, options: dict[str, Any]) -> None:
        if options["once"]:
            # One record per host, however often cron runs it: its heartbeat
            # says a relay runs here.
            name = f"{outbox.RELAY_PREFIX}{socket.gethostname()}:once"
            relay = Relay(using=options["database"], name=name)
            self.stdout.write(f"Handed over {relay.run_once()} deliveries.")
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

    def _retry(self, options: dict[str, Any]) -> None:
        if not (options["ids"] or options["dead"] or options["receiver"]):
            raise CommandError("Name delivery ids, or use --dead or --receiver KEY.")
        which = Q()
        if options["ids"]:
            which &= Q(id__in=options["ids"])
        if options["receiver"]:
            which &= Q(receiver=options["receiver"])
        count = outbox.retry_dead(which, using=options["database"])
        self.stdout.write(f"{count} dead deliveries are available again.")

    def _prune(self, options: dict[str, Any]) -> None:
        settings = conf.get()
        pruned = outbox.prune(
            completed=settings.completed_retention,
            dead=settings.dead_retention,
            dead_payload=settings.dead_payload_retention,
            using=options["database"],
        )
        self.stdout.write(
            f"Deleted {pruned.completed} completed and {pruned.dead} dead "
            f"deliveries; erased the payloads of {pruned.erased} dead deliveries "
            f"(their rows are kept)."
        )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number
