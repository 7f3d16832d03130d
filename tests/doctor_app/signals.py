"""The sample project's signals: one each, so the two halves never meet."""

from __future__ import annotations

from signalbox import Signal

seeded_order_paid = Signal()
clean_order_paid = Signal()
