"""What RADIUS gets from IPAM: reply addresses in bulk, and a change notice on commit."""
import sys
import time

import pytest
from django.db import connection, transaction

from ipam import selectors, services

pytestmark = pytest.mark.django_db


def test_reply_addresses_in_bulk(make_customer, static_pool, link_pool, delegated_pool, django_assert_num_queries):
    a, b, c = make_customer(), make_customer(), make_customer("hotspot")
    services.assign_static_ip(a, actor=None)
    services.assign_ipv6(a, actor=None)
    services.assign_ipv6(b, actor=None, delegate=False)
    with django_assert_num_queries(1):
        got = selectors.reply_addresses([a.id, b.id, c.id])
    assert got == {
        a.id: {"framed_ip": "10.0.0.1", "framed_ipv6_prefix": "2001:db8::/64",
               "delegated_ipv6_prefix": "2001:db8:100::/56"},
        b.id: {"framed_ip": None, "framed_ipv6_prefix": "2001:db8:0:1::/64", "delegated_ipv6_prefix": None},
        c.id: {"framed_ip": None, "framed_ipv6_prefix": None, "delegated_ipv6_prefix": None},
    }
    assert selectors.reply_attributes([a.id, b.id, c.id]) == {
        a.id: [("Framed-IP-Address", "10.0.0.1"), ("Framed-IPv6-Prefix", "2001:db8::/64"),
               ("Delegated-IPv6-Prefix", "2001:db8:100::/56")],
        b.id: [("Framed-IPv6-Prefix", "2001:db8:0:1::/64")],
    }


@pytest.fixture
def published(monkeypatch):
    """Undo the suite's silencing of `_publish` and record what reaches RADIUS."""
    import radius.snapshot

    calls = []
    monkeypatch.setattr(services, "_publish", _real_publish)
    monkeypatch.setattr(radius.snapshot, "publish_invalidation", lambda *args: calls.append(args))
    return calls


_real_publish = services._publish  # the suite's autouse fixture replaces it; these tests put it back


def test_change_is_published_once_on_commit(tenant, make_customer, static_pool, published,
                                            django_capture_on_commit_callbacks):
    a, b = make_customer(), make_customer()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            x = services.assign_static_ip(a, actor=None)
            services.assign_static_ip(b, actor=None)
        assert published == []  # nothing before commit
    assert published == [(tenant.id, sorted([a.id, b.id]))]
    with django_capture_on_commit_callbacks(execute=True):
        services.release(x, actor=None)
    assert published[-1] == (tenant.id, [a.id])


def test_nothing_published_on_rollback(tenant, customer, static_pool, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                services.assign_static_ip(customer, actor=None)
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert published == []


def test_without_a_radius_snapshot_module_nothing_happens(tenant, customer, static_pool, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    monkeypatch.setattr(services, "_publish", _real_publish)
    monkeypatch.setitem(sys.modules, "radius.snapshot", None)  # import now fails
    with django_capture_on_commit_callbacks(execute=True):
        services.assign_static_ip(customer, actor=None)


def test_a_failing_publisher_does_not_break_the_commit(tenant, customer, static_pool, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    import radius.snapshot

    def broken(*args):
        raise ConnectionError("redis down")

    monkeypatch.setattr(services, "_publish", _real_publish)
    monkeypatch.setattr(radius.snapshot, "publish_invalidation", broken)
    with django_capture_on_commit_callbacks(execute=True):
        services.assign_static_ip(customer, actor=None)
    assert customer.ip_assignments.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="end to end on PostgreSQL and Redis")
def test_change_reaches_the_radius_snapshot_within_a_second(tenant, customer, static_pool, monkeypatch):
    from radius.snapshot import Snapshot

    monkeypatch.setattr(services, "_publish", _real_publish)
    snap = Snapshot()
    snap.load_all()
    snap.start_sync()
    try:
        subscribed = getattr(snap, "subscribed", None)
        if subscribed is not None:
            assert subscribed.wait(5)
        else:
            time.sleep(0.5)
        assert snap.by_id[customer.id].static_ip is None
        started = time.monotonic()
        services.assign_static_ip(customer, actor=None)
        while time.monotonic() - started < 1.0 and snap.by_id[customer.id].static_ip != "10.0.0.1":
            time.sleep(0.01)
        assert snap.by_id[customer.id].static_ip == "10.0.0.1"
        assert time.monotonic() - started < 1.0
    finally:
        snap.stop_sync()
        connection.close()
