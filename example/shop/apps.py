"""The shop app's configuration: connects the receivers at start-up."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Imports :mod:`shop.receivers` once the app registry is ready."""

    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the receivers (importing the module runs their decorators).

        This runs in every process, ``manage.py signalbox worker`` included,
        which is how the worker finds the background receivers it may run.
        """
        from shop import receivers  # noqa: F401
