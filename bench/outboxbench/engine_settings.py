"""The benchmark's settings with a ``"celery"`` engine on the bench's Celery app.

For bench/engines.py: the driver and its Celery workers both load it, so the
workers build the engine (which registers ``signalbox.deliver.celery``) and
connect :mod:`outboxbench.engine_receivers` (``--include``).
"""

from __future__ import annotations

from outboxbench.settings import *  # noqa: F403
from outboxbench.settings import DATABASES, SIGNALBOX

# Kept between deliveries (with CELERY_DB_REUSE_MAX in the Celery app).
DATABASES["default"]["CONN_MAX_AGE"] = 600

SIGNALBOX = {
    **SIGNALBOX,
    "ENGINES": {
        "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
        "celery": {
            "BACKEND": "signalbox.engines.celery.CeleryEngine",
            "OPTIONS": {"app": "outboxbench.celery_app.app", "queue_prefix": "bench-"},
        },
    },
}
