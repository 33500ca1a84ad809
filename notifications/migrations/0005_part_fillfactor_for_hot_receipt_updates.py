"""Leave room in each page of the parts table so a receipt's state change is a HOT
update (no new entry in the part's four indexes): a part is inserted once and updated
by its receipt(s) shortly after, while its page is still hot. Affects pages written from
now on; no rewrite of existing rows. A PostgreSQL storage parameter: nothing to do on the
first-run SQLite database."""
from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE notifications_messagepart SET (fillfactor = 70)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE notifications_messagepart RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0004_inbox_tickets_webhooks"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
