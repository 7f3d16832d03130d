"""``manage.py signalbox <subcommand>``: signalbox's one command-line entry point.

Subcommands:

``list [--json]``
    Every signal that has receivers, with each receiver's key, mode, sender
    filter and ``file:line``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from signalbox.observe import inventory


class Command(BaseCommand):
    help = "Inspect and run signalbox: see `manage.py signalbox list --help`."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="subcommand"
        )
        listing = subcommands.add_parser(
            "list",
            help="List every signal that has receivers, and how each receiver runs.",
        )
        listing.add_argument(
            "--json", action="store_true", help="Print JSON instead of a table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "list":
            self._list(as_json=options["json"])

    def _list(self, *, as_json: bool) -> None:
        listings = inventory.connected_receivers()
        if as_json:
            data = [listing.as_dict() for listing in listings]
            self.stdout.write(json.dumps(data, indent=2))
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
