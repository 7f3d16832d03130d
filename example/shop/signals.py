"""The shop's own signals."""

import signalbox

order_paid = signalbox.Signal()
"""Sent once an order is paid, with ``order=`` (the :class:`~shop.models.Order`)."""
