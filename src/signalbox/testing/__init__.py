"""Testing receivers: ``signalbox.testing``.

::

    from signalbox import testing

    def test_paying_sends_the_invoice(db):
        with testing.capture() as sent:
            with transaction.atomic():
                order_paid.send(sender=Order, order=order)
            testing.drain()
        testing.assert_delivered(send_invoice_email, order=order)

:func:`capture` records every send and what became of it at each receiver;
:func:`drain` runs the pending on-commit and background deliveries in this
process, through the real codec and the worker's runner, inside a
``TestCase`` as in a ``TransactionTestCase``; :func:`assert_delivered`,
:func:`assert_not_delivered` and :func:`assert_sent` check a capture with
messages that list what was sent; :func:`connected_to` and :func:`muted`
connect or silence receivers for one block; :func:`run_background_inline`
runs background receivers at the send, still through the codec. The pytest
plugin (:mod:`signalbox.testing.pytest_plugin`) puts all of it in one
fixture. See docs/testing.md.
"""

from signalbox.testing._assertions import (
    assert_delivered,
    assert_not_delivered,
    assert_sent,
    describe,
)
from signalbox.testing._capture import Capture, capture, run_background_inline
from signalbox.testing._drain import (
    DeliveryFailed,
    NotCommitted,
    Ran,
    Until,
    drain,
)
from signalbox.testing._helpers import connected_to, muted
from signalbox.testing._records import Background, Happened, Reached, Sent
from signalbox.worker import Outcome

__all__ = [
    "Background",
    "Capture",
    "DeliveryFailed",
    "Happened",
    "NotCommitted",
    "Outcome",
    "Ran",
    "Reached",
    "Sent",
    "Until",
    "assert_delivered",
    "assert_not_delivered",
    "assert_sent",
    "capture",
    "connected_to",
    "describe",
    "drain",
    "muted",
    "run_background_inline",
]
