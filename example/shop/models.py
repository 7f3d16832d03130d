"""The shop's one model."""

from django.db import models


class Order(models.Model):
    """An order; checkout creates it already paid."""

    number = models.CharField(max_length=32, unique=True)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    paid = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.number}"
