"""A module-level lazy object that records whether anything built it.

Listing signals walks every loaded module; it must never build a lazy object
it walks past (it once evaluated staticfiles_storage, which fails without
STATIC_URL). This lives outside test modules because pytest's collector
builds lazy objects in the modules it collects.
"""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

built: list[str] = []


def _build() -> object:
    built.append("built")
    return object()


lazy_thing = SimpleLazyObject(_build)
