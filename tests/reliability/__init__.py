"""The fault-injection harness: scenarios that hurt real workers and check the rows.

Run it with ``make reliability`` (CI size) or ``make soak`` (full size); see
docs/reliability.md for what each scenario does and what it showed.
"""
