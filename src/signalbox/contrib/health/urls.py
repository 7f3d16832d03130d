"""``include("signalbox.contrib.health.urls")``: the health view at the
included prefix, named ``signalbox-health``."""

from __future__ import annotations

from django.urls import URLPattern, path

from signalbox.contrib.health import health_view

urlpatterns: list[URLPattern] = [
    path("", health_view, name="signalbox-health"),
]
