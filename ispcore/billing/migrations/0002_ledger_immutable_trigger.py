"""On PostgreSQL, refuse UPDATE and DELETE of ledger entries and transactions in the
database itself, so no code path (raw SQL, a shell, a bug) can rewrite history.
SQLite (first-run default) relies on the model-level guard."""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_is_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'ledger rows are immutable (' || TG_OP || ' on ' || TG_TABLE_NAME || ')',
        ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_ledgerentry_immutable BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_is_immutable();
CREATE TRIGGER billing_ledgertransaction_immutable BEFORE UPDATE OR DELETE ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_is_immutable();
"""
DROP = """
DROP TRIGGER IF EXISTS billing_ledgerentry_immutable ON billing_ledgerentry;
DROP TRIGGER IF EXISTS billing_ledgertransaction_immutable ON billing_ledgertransaction;
DROP FUNCTION IF EXISTS billing_ledger_is_immutable();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
