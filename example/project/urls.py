"""The example project's URLs: everything is the shop's."""

from django.urls import include, path

urlpatterns = [
    path("", include("shop.urls")),
]
