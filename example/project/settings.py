"""Settings for the example shop: SQLite, signalbox, and short signalbox warnings.

Not for production: the secret key is public and the database is a local file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-shop-not-a-secret"  # a local example only
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "signalbox",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "project.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        # The demo's requests and its `signalbox worker` process write to this
        # file at the same time: WAL lets readers go on while one writes, and
        # IMMEDIATE takes the write lock when a transaction begins, so a busy
        # writer waits (up to `timeout` seconds) instead of failing mid-way.
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# No SMTP server here: Django keeps sent mail in memory (django.core.mail.outbox).
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"

# How long the simulated SMTP round trip of shop.receivers.send_invoice_email
# takes. `manage.py demo --fast` passes its shorter one to the worker it starts
# through the environment.
SHOP_EMAIL_SECONDS = float(os.environ.get("SHOP_EMAIL_SECONDS", "2.0"))

SIGNALBOX = {
    "SLOW_RECEIVER_MS": 250,  # warn about a receiver call slower than this
    "LOOP_BLOCK_MS": 20,  # warn when a sync send() holds a running event loop
    # SQLite has no LISTEN/NOTIFY, so an idle worker looks for due rows this
    # often (the default is 1 s; on PostgreSQL the commit wakes it at once).
    "POLL_SECONDS": 0.1,
}

# signalbox's warnings are kept visible but cut to their first sentence; each
# distinct warning is shown once, because the demo repeats the same slow call
# on purpose. Errors (a failed on_commit receiver) keep their traceback.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "first_of_each": {"()": "project.logs.FirstOfEachWarning"},
    },
    "formatters": {
        "compact": {"()": "project.logs.CompactFormatter"},
    },
    "handlers": {
        "signalbox": {
            "class": "logging.StreamHandler",
            "formatter": "compact",
            "filters": ["first_of_each"],
        },
        "worker": {"class": "logging.StreamHandler", "formatter": "compact"},
    },
    "loggers": {
        "signalbox": {
            "handlers": ["signalbox"],
            "level": "WARNING",
            "propagate": False,
        },
        # The worker says when it starts and stops, and every retry.
        "signalbox.worker": {
            "handlers": ["worker"],
            "level": "INFO",
            "propagate": False,
        },
    },
}
