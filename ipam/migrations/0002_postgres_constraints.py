"""On PostgreSQL, back the IPAM rules with the database itself, so no code path
(raw SQL, a shell, an import script, a race) can hand out an address twice or
outside its pool:

* GiST exclusion constraints (btree_gist for the tenant id): siblings of a prefix
  never overlap; no two assignments of a tenant overlap; no two reservations do.
* CHECKs: the family column matches the network; a pool is at least as big as
  what it hands out.
* Triggers for the rules spanning rows: a child lies strictly inside its parent
  (and dynamic pools have no children); a prefix's identity never changes; an
  assignment lies inside its pool, matches the pool's role and unit size, is not
  the network/broadcast (or IPv6 subnet-router) address, not reserved, not in a
  more specific prefix, and a static IPv4 is not inside a dynamic pool; a new
  prefix does not cover existing assignments; a reservation never covers one.

Violations raise SQLSTATE 23P01 (exclusion) or 23514 (check_violation), both
IntegrityError in Django. SQLite (first run) relies on the services' checks."""
from django.db import migrations

CREATE = r"""
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE ipam_prefix ADD CONSTRAINT ipam_prefix_no_sibling_overlap
    EXCLUDE USING gist (tenant_id WITH =, (COALESCE(parent_id, 0)) WITH =, network inet_ops WITH &&);
ALTER TABLE ipam_prefix ADD CONSTRAINT ipam_prefix_family_matches CHECK (family(network) = family);
ALTER TABLE ipam_prefix ADD CONSTRAINT ipam_prefix_fits_unit CHECK (
    (role <> 'ipv6_link' OR masklen(network) <= 64)
    AND (delegated_prefixlen IS NULL OR masklen(network) <= delegated_prefixlen)
);
ALTER TABLE ipam_assignment ADD CONSTRAINT ipam_assignment_no_overlap
    EXCLUDE USING gist (tenant_id WITH =, network inet_ops WITH &&);
ALTER TABLE ipam_reservation ADD CONSTRAINT ipam_reservation_no_overlap
    EXCLUDE USING gist (tenant_id WITH =, network inet_ops WITH &&);

CREATE OR REPLACE FUNCTION ipam_prefix_check() RETURNS trigger AS $$
DECLARE
    p ipam_prefix%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND (
        NEW.network <> OLD.network OR NEW.tenant_id <> OLD.tenant_id OR NEW.family <> OLD.family
        OR NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.role <> OLD.role
        OR NEW.delegated_prefixlen IS DISTINCT FROM OLD.delegated_prefixlen
    ) THEN
        RAISE EXCEPTION 'the network, tenant, parent, role and delegation size of prefix % cannot change', OLD.network
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    IF NEW.parent_id IS NOT NULL THEN
        SELECT * INTO p FROM ipam_prefix WHERE id = NEW.parent_id;
        IF p.tenant_id <> NEW.tenant_id OR NOT (p.network >> NEW.network) THEN
            RAISE EXCEPTION 'prefix % must lie strictly inside its parent % of the same tenant', NEW.network, p.network
                USING ERRCODE = 'check_violation';
        END IF;
        IF p.role = 'customer_dynamic' THEN
            RAISE EXCEPTION 'dynamic pool % cannot contain other prefixes', p.network USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM ipam_assignment a WHERE a.tenant_id = NEW.tenant_id AND a.network && NEW.network) THEN
        RAISE EXCEPTION 'prefix % covers addresses already assigned from another pool', NEW.network
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ipam_prefix_check BEFORE INSERT OR UPDATE ON ipam_prefix
    FOR EACH ROW EXECUTE FUNCTION ipam_prefix_check();

CREATE OR REPLACE FUNCTION ipam_assignment_check() RETURNS trigger AS $$
DECLARE
    p ipam_prefix%ROWTYPE;
    unit integer;
BEGIN
    SELECT * INTO p FROM ipam_prefix WHERE id = NEW.prefix_id;
    IF p.tenant_id <> NEW.tenant_id OR NOT (p.network >>= NEW.network) THEN
        RAISE EXCEPTION 'assignment % lies outside its pool %', NEW.network, p.network USING ERRCODE = 'check_violation';
    END IF;
    IF NOT ((NEW.kind = 'ipv4_static' AND p.role = 'customer_static')
            OR (NEW.kind = 'ipv6_link' AND p.role = 'ipv6_link')
            OR (NEW.kind = 'ipv6_delegated' AND p.role = 'ipv6_delegated')
            OR (NEW.kind = 'interface' AND p.role = 'infrastructure')) THEN
        RAISE EXCEPTION 'a % assignment cannot come from a % prefix', NEW.kind, p.role USING ERRCODE = 'check_violation';
    END IF;
    unit := CASE p.role WHEN 'customer_static' THEN 32 WHEN 'ipv6_link' THEN 64
                        WHEN 'ipv6_delegated' THEN p.delegated_prefixlen END;
    IF unit IS NOT NULL AND masklen(NEW.network) <> unit THEN
        RAISE EXCEPTION 'assignment % from pool % must be a /%', NEW.network, p.network, unit
            USING ERRCODE = 'check_violation';
    END IF;
    IF family(p.network) = 4 AND masklen(p.network) <= 30 AND (
        NEW.network && set_masklen(network(p.network), 32) OR NEW.network && set_masklen(broadcast(p.network), 32)
    ) THEN
        RAISE EXCEPTION 'assignment % covers the network or broadcast address of %', NEW.network, p.network
            USING ERRCODE = 'check_violation';
    END IF;
    IF family(p.network) = 6 AND masklen(NEW.network) = 128 AND masklen(p.network) <= 126
        AND NEW.network = set_masklen(network(p.network), 128) THEN
        RAISE EXCEPTION 'assignment % is the subnet-router anycast address of %', NEW.network, p.network
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM ipam_reservation r WHERE r.tenant_id = NEW.tenant_id AND r.network && NEW.network) THEN
        RAISE EXCEPTION 'assignment % covers a reserved address', NEW.network USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM ipam_prefix c WHERE c.tenant_id = NEW.tenant_id AND c.network << p.network
               AND c.network && NEW.network) THEN
        RAISE EXCEPTION 'assignment % lies in a more specific prefix than %', NEW.network, p.network
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.kind = 'ipv4_static' AND EXISTS (
        SELECT 1 FROM ipam_prefix d WHERE d.tenant_id = NEW.tenant_id AND d.role = 'customer_dynamic'
        AND d.network && NEW.network) THEN
        RAISE EXCEPTION 'static address % lies inside a dynamic pool', NEW.network USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ipam_assignment_check BEFORE INSERT OR UPDATE ON ipam_assignment
    FOR EACH ROW EXECUTE FUNCTION ipam_assignment_check();

CREATE OR REPLACE FUNCTION ipam_reservation_check() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ipam_assignment a WHERE a.tenant_id = NEW.tenant_id AND a.network && NEW.network) THEN
        RAISE EXCEPTION 'reservation % covers an assigned address', NEW.network USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ipam_reservation_check BEFORE INSERT OR UPDATE ON ipam_reservation
    FOR EACH ROW EXECUTE FUNCTION ipam_reservation_check();
"""

DROP = r"""
DROP TRIGGER IF EXISTS ipam_reservation_check ON ipam_reservation;
DROP FUNCTION IF EXISTS ipam_reservation_check();
DROP TRIGGER IF EXISTS ipam_assignment_check ON ipam_assignment;
DROP FUNCTION IF EXISTS ipam_assignment_check();
DROP TRIGGER IF EXISTS ipam_prefix_check ON ipam_prefix;
DROP FUNCTION IF EXISTS ipam_prefix_check();
ALTER TABLE ipam_reservation DROP CONSTRAINT IF EXISTS ipam_reservation_no_overlap;
ALTER TABLE ipam_assignment DROP CONSTRAINT IF EXISTS ipam_assignment_no_overlap;
ALTER TABLE ipam_prefix DROP CONSTRAINT IF EXISTS ipam_prefix_fits_unit;
ALTER TABLE ipam_prefix DROP CONSTRAINT IF EXISTS ipam_prefix_family_matches;
ALTER TABLE ipam_prefix DROP CONSTRAINT IF EXISTS ipam_prefix_no_sibling_overlap;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ipam", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
