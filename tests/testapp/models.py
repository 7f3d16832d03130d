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
