"""An index for the worker's claim on MySQL and MariaDB, which have no partial
indexes.

Django creates ``signalbox_delivery_due`` there without its condition, so it
holds every row: the claim walked it past each finished row still kept (all
of them sort before a new row), and a SELECT ... FOR UPDATE locks what it
walks. This index leads with ``state``, so the claim, one query per waiting
state (outbox._claim_mysql), reads and locks only rows it may take. Other
databases keep the partial index and get nothing from this migration; the
model's state does not know the index, which only the claim's SQL relies on.
"""

from django.db import migrations

NAME = "signalbox_delivery_waiting"
COLUMNS = ("state", "engine", "queue", "priority", "scheduled_at", "id")


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "mysql":
        return
    quote = schema_editor.quote_name
    schema_editor.execute(
        f"CREATE INDEX {quote(NAME)} ON {quote('signalbox_delivery')} "
        f"({', '.join(quote(column) for column in COLUMNS)})"
    )


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "mysql":
        return
    quote = schema_editor.quote_name
    schema_editor.execute(f"DROP INDEX {quote(NAME)} ON {quote('signalbox_delivery')}")


class Migration(migrations.Migration):
    dependencies = [
        ("signalbox", "0003_delivery_engine"),
    ]

    operations = [
        migrations.RunPython(create, drop, atomic=False, elidable=False),
    ]
