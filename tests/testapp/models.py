from __future__ import annotations

from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=32)
    paid = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.number


class Note(models.Model):
    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text


class Invoice(models.Model):
    """A field of each kind whose ``to_python()`` converts or refuses values.

    The codec tests forge snapshots of it that the fields must refuse.
    """

    reference = models.UUIDField()
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    issued = models.DateField()
    sent_at = models.DateTimeField(null=True)
    due_in = models.DurationField()
    lines = models.IntegerField()
    rate = models.FloatField()
    settled = models.BooleanField(default=False)
    customer = models.EmailField()

    def __str__(self) -> str:
        return str(self.reference)
