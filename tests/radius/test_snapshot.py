"""The authorization snapshot: invalidated within a second through Redis pub/sub,
published only on commit, and serving without the database."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction

from ispcore.catalog import services as catalog
from ispcore.subscribers import services as subscribers
from radius import crypto
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.snapshot import Snapshot, channel
from radius.testing import PASSWORD, SECRET, UdpClient, access_request

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


@pytest.fixture
def server(world, tmp_path):
    srv = ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=True)
    srv.start()
    assert srv.worker.snapshot.subscribed.is_set()
    yield srv
    srv.stop()


def login(port, user="alice", source="127.0.0.1"):
    with UdpClient(port, source=source, timeout=1) as c:
        raw, _ = access_request(user, SECRET, password=PASSWORD, extra=PPP)
        reply = c.ask(raw)
    return None if reply is None else decode(reply)


def eventually(check, timeout=1.0):
    """Poll ``check`` until it is true; return the seconds it took (fail after ``timeout``)."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.1f} s")
        time.sleep(0.02)


def test_customer_change_applies_within_a_second(server, world):
    assert login(server.auth_port).code == crypto.ACCESS_ACCEPT
    subscribers.update_customer(world["alice"], actor=world["super"], status="suspended")
    eventually(lambda: login(server.auth_port).code == crypto.ACCESS_REJECT)
    subscribers.update_customer(world["alice"], actor=world["super"], status="active", password="New-Pass-1")
    eventually(lambda: server.worker.snapshot.customer(world["tenant"].id, "alice").password == "New-Pass-1")
    assert login(server.auth_port).code == crypto.ACCESS_REJECT  # old password


def test_new_customer_and_package_change(server, world):
    subscribers.create_customer(actor=world["super"], tenant=world["tenant"], node=world["root"], username="newbie",
                                password=PASSWORD, customer_type="pppoe", full_name="New", mobile="+8801712345678",
                                package=world["pkg_ppp"], expires_at=world["alice"].expires_at)
    eventually(lambda: login(server.auth_port, "newbie").code == crypto.ACCESS_ACCEPT)
    catalog.update_package(world["pkg_ppp"], actor=world["super"], upload_kbps=20480, download_kbps=20480)
    eventually(lambda: login(server.auth_port).text((14988, 8)) == "20M/20M")


def test_new_nas_and_secret_change(server, world):
    assert login(server.auth_port, source="127.0.0.4") is None
    subscribers.create_nas(actor=world["super"], tenant=world["tenant"], name="NAS 4", ip_address="127.0.0.4",
                           secret=SECRET.decode())
    eventually(lambda: server.worker.snapshot.nas("127.0.0.4") is not None)
    assert login(server.auth_port, source="127.0.0.4").code == crypto.ACCESS_ACCEPT
    subscribers.update_nas(world["nas"], actor=world["super"], secret="changed")
    eventually(lambda: server.worker.snapshot.nas("127.0.0.1").secret == b"changed")
    assert login(server.auth_port) is None  # the old secret no longer verifies


def test_price_change_reloads_tenant(server, world):
    from ispcore.accounts import services as accounts
    from ispcore.accounts.roles import NodeKind

    reseller = accounts.create_node(actor=world["super"], parent=world["root"], kind=NodeKind.RESELLER, name="R")
    time.sleep(0.3)
    before = server.worker.snapshot.generation
    catalog.set_price(actor=world["super"], node=reseller, package=world["pkg_ppp"], node_price=Decimal("1"),
                      customer_price=Decimal("2"))
    eventually(lambda: server.worker.snapshot.generation > before)


def test_invalidation_published_only_on_commit(world):
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel("invalidate"))
    time.sleep(0.1)
    with transaction.atomic():
        subscribers.update_customer(world["alice"], actor=world["super"], status="suspended")
        assert next_message(pubsub, 0.3) is None
    assert next_message(pubsub) == {"tenant": world["tenant"].id, "customers": [world["alice"].id]}
    with transaction.atomic():
        subscribers.update_customer(world["alice"], actor=world["super"], status="active")
        transaction.set_rollback(True)
    assert next_message(pubsub, 0.3) is None
    pubsub.close()


def test_snapshot_contents(world):
    snap = Snapshot()
    snap.load_all()
    alice = snap.customer(world["tenant"].id, "alice")
    assert alice.password == PASSWORD and alice.rate_limit == "5M/10M" and alice.open_sessions == 0
    assert snap.customer(world["tenant"].id, "mac1").mac_address == "AA:BB:CC:DD:EE:01"
    quota = snap.customer(world["tenant"].id, "quota_data")
    assert quota.data_quota_bytes == 1024 * 1024 and quota.period_start is not None
    assert snap.nas("127.0.0.1").secret == SECRET and snap.nas("127.0.0.1").require_message_authenticator
    assert snap.customer(world["tenant"].id, "nobody") is None


def test_snapshot_is_compact(world):
    """Memory: the password memo is keyed by 16-octet digests, not the encrypted tokens;
    repeated short strings are one object; entries without IPAM addresses share one
    empty tuple."""
    snap = Snapshot()
    snap.load_all()
    assert snap._decrypted and all(isinstance(k, bytes) and len(k) == 16 for k in snap._decrypted)
    assert PASSWORD in snap._decrypted.values()
    entries = [e for e in snap.by_id.values() if e.status == "active"]
    assert len(entries) >= 2
    assert all(e.status is entries[0].status for e in entries)
    assert all(type(e.addresses) is tuple for e in snap.by_id.values() if not e.addresses)
    # a password change: the reload decrypts the new token
    subscribers.update_customer(world["alice"], actor=world["super"], password="N3w-pass-2026")
    snap.reload_customers([world["alice"].id])
    assert snap.customer(world["tenant"].id, "alice").password == "N3w-pass-2026"


def test_serves_from_snapshot_when_database_unreachable(server, monkeypatch):
    """Break every new query: authentication keeps answering from memory."""
    from django.db.backends.utils import CursorWrapper

    def broken(*args, **kwargs):
        raise AssertionError("no database access on the authentication path")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    monkeypatch.setattr(CursorWrapper, "executemany", broken)
    server.worker.server.auth_log = "none"
    assert login(server.auth_port).code == crypto.ACCESS_ACCEPT


def test_package_change_refreshes_only_package_fields(server, world):
    """A package change re-derives its customers' limits without reloading customers."""
    snapshot = server.worker.snapshot
    before = snapshot.customer(world["tenant"].id, "alice")
    catalog.update_package(world["pkg_ppp"], actor=world["super"], is_active=False)
    eventually(lambda: login(server.auth_port).text(18) == "No active package")
    after = snapshot.customer(world["tenant"].id, "alice")
    assert after is not before and after.password == before.password and not after.package_active
    assert snapshot.customer(world["tenant"].id, "burst") is snapshot.by_id[world["burst"].id]


def next_message(pubsub, timeout=1.0):
    """The next published message (subscribe confirmations are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return json.loads(message["data"])
    return None


def test_package_message_format(world):
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel("invalidate"))
    time.sleep(0.1)
    catalog.update_package(world["pkg_hot"], actor=world["super"], grace_minutes=30)
    assert next_message(pubsub) == {"tenant": world["tenant"].id, "customers": None,
                                    "packages": [world["pkg_hot"].id]}
    subscribers.update_nas(world["nas"], actor=world["super"], coa_port=3799)
    assert next_message(pubsub) == {"tenant": world["tenant"].id, "customers": None, "nas": True}
    pubsub.close()


def test_a_full_reload_keeps_unchanged_entries_and_replaces_changed_ones(world):
    """A reload of 100,000 customers must not hold two snapshots at once: entries whose
    data did not change stay the same objects (with their MS-CHAPv2 values); a changed
    customer gets a new entry."""
    from ispcore.subscribers.models import Customer

    snapshot = Snapshot()
    snapshot.load_all()
    tenant = world["tenant"].id
    alice, burst = snapshot.customers[(tenant, "alice")], snapshot.customers[(tenant, "burst")]
    prepared = alice.mschap
    Customer.objects.filter(pk=world["burst"].pk).update(simultaneous_use=3)
    snapshot.load_all()
    assert snapshot.customers[(tenant, "alice")] is alice and alice.mschap is prepared
    assert snapshot.by_id[world["alice"].id] is alice
    fresh = snapshot.customers[(tenant, "burst")]
    assert fresh is not burst and fresh.simultaneous_use == 3 and burst.simultaneous_use != 3
