"""The sender against a real SMSC: early receipts kept and matched, temporary failures
retried with backoff then refunded, failover on a dead route, statistics."""
from __future__ import annotations

import socket
import time
from decimal import Decimal

import pytest

from notifications import credit, reports
from notifications.models import DeliveryReport, Message, MessagePart, ProviderRoute, SmsProfile
from notifications.selectors import message_stats
from notifications.services import queue_message
from notifications.worker import Sender, build_route_providers
from tests.notifications.smscore_support import make_super, make_tenant
from tests.peers.smsc import SMSCSimulator

pytestmark = pytest.mark.django_db(transaction=True)
M = Message.State


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret", id_style="hex_lower") as simulator:
        yield simulator


def run_until(sender, predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.run_once()
        reports.apply_reports()
        if predicate():
            return True
        time.sleep(0.05)
    return False


def make_sender(*routes):
    sender = Sender(build_route_providers(list(routes)), name="w", submit_timeout=5)
    sender.start()
    return sender


def test_early_receipt_is_kept_and_matched(sim, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, route = make_tenant(su, "isp-early", port=sim.port)
    sim.configure(dlr="early", dlr_stat="DELIVRD")
    msg = queue_message(tenant=tenant, to="01711000001", text="Hello", actor=su)
    sender = make_sender(route)
    try:
        assert run_until(sender, lambda: Message.objects.get(pk=msg.pk).state == M.DELIVERED)
    finally:
        sender.stop()
    report = DeliveryReport.objects.get()
    part = MessagePart.objects.get(message=msg)
    assert report.part_id == part.pk and report.received_at <= part.submitted_at
    assert part.state == MessagePart.State.DELIVERED and part.message_key == report.message_key


def test_throttling_is_retried_with_backoff_then_refunded(sim, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, route = make_tenant(su, "isp-retry", port=sim.port, retry_count=2, retry_backoff_seconds=0)
    sim.configure("8801711000002", action="throttle")
    sim.throttle_next(1)
    ok = queue_message(tenant=tenant, to="01711000001", text="Retry me", actor=su)
    doomed = queue_message(tenant=tenant, to="01711000002", text="Never", actor=su)
    sender = make_sender(route)
    try:
        assert run_until(sender, lambda: Message.objects.get(pk=doomed.pk).state == M.FAILED
                         and Message.objects.get(pk=ok.pk).state == M.SUBMITTED)
    finally:
        sender.stop()
    ok.refresh_from_db()
    doomed.refresh_from_db()
    assert ok.attempts == 2 and doomed.attempts == 3  # 1 try + retry_count retries
    assert len(sim.submits_to("8801711000002")) == 3
    assert doomed.refunded_at is not None
    assert credit.held(tenant.pk) == Decimal("0.00") and credit.balance(tenant.pk) == Decimal("999.65")


def test_backoff_delays_the_next_attempt(sim, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, route = make_tenant(su, "isp-backoff", port=sim.port, retry_count=3, retry_backoff_seconds=60)
    sim.throttle_next(1)
    msg = queue_message(tenant=tenant, to="01711000001", text="Later", actor=su)
    sender = make_sender(route)
    try:
        sender.run_once()
        sender.run_once()
    finally:
        sender.stop()
    msg.refresh_from_db()
    assert msg.state == M.QUEUED and msg.attempts == 1
    assert 55 <= (msg.next_attempt_at - msg.submitting_at).total_seconds() <= 65
    assert len(sim.submits) == 1


def test_failover_to_the_next_route_when_the_first_is_down(sim, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    tenant, dead = make_tenant(su, "isp-fo", port=dead_port, route_name="dead")
    dead.settings = {**dead.settings, "bind_wait": 0.3}
    dead.priority = 1
    dead.save()
    live = ProviderRoute.objects.create(tenant=tenant, name="live", kind="smpp", secret="secret", priority=2,
                                        settings={"host": "127.0.0.1", "port": sim.port, "system_id": "ispsms"})
    msg = queue_message(tenant=tenant, to="01711000001", text="Via backup", actor=su)
    assert msg.route_id == dead.pk
    sender = make_sender(dead, live)
    try:
        assert run_until(sender, lambda: Message.objects.get(pk=msg.pk).state == M.SUBMITTED)
    finally:
        sender.stop()
    msg.refresh_from_db()
    assert msg.route_id == live.pk and MessagePart.objects.get(message=msg).provider == "live"
    assert len(sim.submits) == 1


def test_statistics_per_campaign_user_and_period(sim, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    from notifications.campaigns import create_campaign, start_campaign

    su = make_super()
    tenant, route = make_tenant(su, "isp-stats", port=sim.port)
    SmsProfile.objects.filter(tenant=tenant).update(require_bangla=False)
    sim.configure(dlr="late", dlr_delay=0.01)
    sim.configure("8801711000003", dlr="late", dlr_delay=0.01, dlr_stat="UNDELIV")
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="s", body="Hi",
                                       audience={"kind": "numbers",
                                                 "numbers": ["01711000001", "01711000002", "01711000003"]}), actor=su)
    queue_message(tenant=tenant, to="01711000004", text="Single", actor=su)
    sender = make_sender(route)
    try:
        assert run_until(sender, lambda: not Message.objects.filter(state__in=[M.QUEUED, M.SUBMITTING, M.SUBMITTED])
                         .exists())
    finally:
        sender.stop()
    [row] = message_stats(campaign_id=c.pk)
    assert (row["messages"], row["sent"], row["delivered"], row["undelivered"]) == (3, 3, 2, 1)
    assert row["cost"] == Decimal("0.70")
    by_campaign = {r["campaign_id"]: r for r in message_stats(tenant_id=tenant.pk, group_by="campaign")}
    assert by_campaign[None]["delivered"] == 1 and by_campaign[c.pk]["messages"] == 3
    [by_user] = message_stats(tenant_id=tenant.pk, group_by="user")
    assert by_user["created_by_id"] == su.pk and by_user["messages"] == 4
    assert message_stats(tenant_id=tenant.pk, group_by="day")[0]["cost"] == Decimal("1.05")
    with pytest.raises(ValueError):
        message_stats(group_by="colour")
