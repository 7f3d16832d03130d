"""The Django project behind ``bench/outbox.py``: settings, models, receivers, tasks.

The driver and every worker process it starts (signalbox's, Celery's,
procrastinate's) load :mod:`outboxbench.settings`, so all of them run the same
no-op receivers and tasks against the same databases.
"""
