"""An index per-minute billing needs on the RADIUS accounting table: the sessions that
closed after a given time (the tick reads those plus the open ones, never the history).
Built CONCURRENTLY, so adding it to a table of tens of millions of rows does not block
accounting writes. PostgreSQL only, like the tick."""
from django.db import migrations

CREATE = ("CREATE INDEX CONCURRENTLY IF NOT EXISTS billing_session_stopped "
          "ON radius_accountingsession (stopped_at) WHERE stopped_at IS NOT NULL")
DROP = "DROP INDEX CONCURRENTLY IF EXISTS billing_session_stopped"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("billing", "0006_reseller_statement"), ("radius", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
