"""Re-exports, the way projects gather their signals in one module."""

from __future__ import annotations

from django.db.models.signals import post_save

from tests.testapp.events import order_shipped

__all__ = ["order_shipped", "post_save"]
