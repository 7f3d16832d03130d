"""``rq worker --config tests.rq_worker_config``: sets Django up in the worker.

RQ imports this module before it starts working, so the jobs find Django's
settings, apps and signalbox's receivers ready (DJANGO_SETTINGS_MODULE is
set by the test). A project writes the same two lines in its own module.
"""

from __future__ import annotations

import django

django.setup()
