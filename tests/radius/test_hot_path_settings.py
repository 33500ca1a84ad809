"""Settings read on every Access-Accept are cached, and a changed setting applies."""
from radius.auth import accept_attributes, address_list_for
from radius.packet import decode, u32
from radius.snapshot import CustomerEntry
from radius.testing import SECRET, access_request


def entry(**kw) -> CustomerEntry:
    fields = dict(id=1, tenant_id=7, username="alice", password="x", customer_type="pppoe", status="active",
                  expires_ts=None, simultaneous_use=1, mac_address="", static_ip=None, package_id=3,
                  package_active=True, rate_limit="", data_quota_bytes=None, time_quota_seconds=None,
                  period_start=None)
    fields.update(kw)
    return CustomerEntry(**fields)


def request():
    raw, _ = access_request("alice", SECRET, password="x")
    return decode(raw)


def test_changed_settings_apply_to_the_next_accept(settings):
    settings.RADIUS_INTERIM_INTERVAL = 120
    settings.RADIUS_ADDRESS_LIST = "pkg-{package_id}"
    attrs = dict(accept_attributes(entry(), request(), 0))
    assert attrs[85] == u32(120) and attrs[(14988, 19)] == b"pkg-3"
    settings.RADIUS_INTERIM_INTERVAL = 600
    settings.RADIUS_ADDRESS_LIST = "{customer_type}-{tenant_id}"
    attrs = dict(accept_attributes(entry(), request(), 0))
    assert attrs[85] == u32(600) and attrs[(14988, 19)] == b"pppoe-7"
    settings.RADIUS_ADDRESS_LIST = ""
    assert (14988, 19) not in dict(accept_attributes(entry(), request(), 0))


def test_address_list_per_package_type_and_tenant(settings):
    settings.RADIUS_ADDRESS_LIST = "{tenant_id}/{package_id}/{customer_type}"
    assert address_list_for(entry()) == "7/3/pppoe"
    assert address_list_for(entry(package_id=4, customer_type="hotspot")) == "7/4/hotspot"
    assert address_list_for(entry(tenant_id=8)) == "8/3/pppoe"
