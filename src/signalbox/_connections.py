"""Keeping a long-lived thread's database connections, unless one is broken."""

from __future__ import annotations

from django.db import connections


def tidy() -> None:
    """Keep this thread's connections for the next job, unless one is broken.

    Opening a connection per delivery (what ``close_old_connections()`` does
    with Django's default ``CONN_MAX_AGE = 0``) cost more than the delivery;
    a connection is closed only when an error left it unusable, or the code
    that ran left it outside autocommit (a transaction still open). Inside a
    caller's ``atomic()`` block (the job was run from one) nothing is touched.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        broken = connection.errors_occurred and not connection.is_usable()
        # .autocommit is what get_autocommit() returns once connected.
        if broken or not connection.autocommit:
            connection.close()
        else:
            connection.errors_occurred = False
