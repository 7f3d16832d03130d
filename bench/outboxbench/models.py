"""The caller's own row: what a view writes in the transaction that sends."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    number = models.IntegerField()
    note = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"order {self.number}"
