"""The shop's URLs: the three checkout views."""

from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/async/", views.checkout_async, name="checkout-async"),
    path("checkout/async/send/", views.checkout_async_send, name="checkout-async-send"),
]
