"""Settings for the example shop: SQLite, signalbox, and short signalbox warnings.

Not for production: the secret key is public and the database is a local file.
"""

from __future__ import annotations

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
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# No SMTP server here: Django keeps sent mail in memory (django.core.mail.outbox).
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"

# How long the simulated SMTP round trip of shop.receivers.send_invoice_email takes.
SHOP_EMAIL_SECONDS = 2.0

SIGNALBOX = {
    "SLOW_RECEIVER_MS": 250,  # warn about a receiver call slower than this
    "LOOP_BLOCK_MS": 20,  # warn when a sync send() holds a running event loop
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
    },
    "loggers": {
        "signalbox": {
            "handlers": ["signalbox"],
            "level": "WARNING",
            "propagate": False,
        },
    },
}
