"""On PostgreSQL, keep billing_servicespan in step with subscribers_customer from inside the
database: every insert, and every update that changes status, package or node, closes the
customer's open span and opens a new one while it is active with a package. Spans use the
transaction's time (now()), the same clock the services use. Existing active customers get
an open span starting at migration time (they are billed per minute from then on).
SQLite (first-run default) has no per-minute billing."""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_track_service_span() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.status IS NOT DISTINCT FROM OLD.status AND NEW.package_id IS NOT DISTINCT FROM OLD.package_id
           AND NEW.node_id IS NOT DISTINCT FROM OLD.node_id THEN
            RETURN NEW;
        END IF;
        UPDATE billing_servicespan SET ended_at = greatest(now(), started_at)
         WHERE customer_id = NEW.id AND ended_at IS NULL;
    END IF;
    IF NEW.status = 'active' AND NEW.package_id IS NOT NULL THEN
        INSERT INTO billing_servicespan (customer_id, node_id, package_id, started_at)
        VALUES (NEW.id, NEW.node_id, NEW.package_id, now());
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_customer_service_span AFTER INSERT OR UPDATE OF status, package_id, node_id
    ON subscribers_customer FOR EACH ROW EXECUTE FUNCTION billing_track_service_span();
INSERT INTO billing_servicespan (customer_id, node_id, package_id, started_at)
    SELECT id, node_id, package_id, now() FROM subscribers_customer
     WHERE status = 'active' AND package_id IS NOT NULL;
"""
DROP = """
DROP TRIGGER IF EXISTS billing_customer_service_span ON subscribers_customer;
DROP FUNCTION IF EXISTS billing_track_service_span();
DELETE FROM billing_servicespan;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_minute_billing"), ("subscribers", "0002_customer_billing_start_customer_monthly_discount_and_more")]
    operations = [migrations.RunPython(forwards, backwards)]
