"""Settings for engine worker processes (rq, dramatiq, qcluster, db_worker).

The acceptance tests' worker settings, plus the engine under test as
``"remote"``: its ``BACKEND`` and ``OPTIONS`` arrive as JSON in
``SIGNALBOX_WORKER_ENGINE``. Any extra settings (``Q_CLUSTER``, ``TASKS``)
arrive as JSON in ``SIGNALBOX_WORKER_EXTRA``.
"""

from __future__ import annotations

import json
import os

from tests.worker_settings import *  # noqa: F403
from tests.worker_settings import SIGNALBOX

SIGNALBOX["ENGINES"] = {
    "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
    "remote": json.loads(os.environ["SIGNALBOX_WORKER_ENGINE"]),
}
globals().update(json.loads(os.environ.get("SIGNALBOX_WORKER_EXTRA", "{}")))
