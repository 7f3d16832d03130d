"""The shop's test fixtures: a fast e-mail, and a clean slate per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from shop import effects


@pytest.fixture(autouse=True)
def _shop(settings: pytest.FixtureRequest) -> Iterator[None]:
    settings.SHOP_EMAIL_SECONDS = 0  # type: ignore[attr-defined]
    effects.clear()
    cache.clear()
    yield
    effects.clear()
