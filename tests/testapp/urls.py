from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from tests.testapp import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("signalbox/health/", include("signalbox.contrib.health.urls")),
    path("orders/", views.place_order),
    path("orders/non-atomic/", views.place_order_non_atomic),
    path("orders/both/", views.place_order_on_both),
    path("async/orders/", views.place_order_async),
    path("async/send/", views.send_from_async_view),
    path("async/send/django/", views.send_django_signals_from_async_view),
]
