"""A signal defined here and re-exported from ``tests.testapp.signals``."""

from __future__ import annotations

import signalbox

order_shipped = signalbox.Signal()
