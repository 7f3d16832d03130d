"""``dramatiq tests.dramatiq_worker:broker``: Django set up, the engine's broker.

What a project writes as its own worker module (with its engine's alias).
"""

from __future__ import annotations

import django

django.setup()

from signalbox.engines.dramatiq import broker as _broker  # noqa: E402

broker = _broker("remote")
