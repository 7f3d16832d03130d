"""The sample project's own functions, that receivers call: the doctor
follows calls into them."""

from __future__ import annotations

import urllib.request
from typing import Any


def fetch_rates() -> bytes:
    """Blocks: an HTTP request."""
    with urllib.request.urlopen("http://127.0.0.1:9/rates") as response:
        body: bytes = response.read()
        return body


def refresh_rates() -> None:
    """Blocks two calls deep: through :func:`fetch_rates`."""
    fetch_rates()


def describe(order: Any) -> str:
    """Does not block."""
    return f"order {order}"
