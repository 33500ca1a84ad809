"""SMS credit in the ledger: hold, charge, refund with exact amounts, against a real SMSC."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from ispcore.billing.models import LedgerTransaction
from ispcore.billing.services import ledger_differences
from notifications import credit, reports
from notifications.campaigns import create_campaign, start_campaign
from notifications.credit import InsufficientSmsCredit
from notifications.models import Campaign, Message
from notifications.services import queue_message
from notifications.worker import Sender, build_route_providers
from tests.notifications.smscore_support import make_super, make_tenant
from tests.peers.smsc import SMSCSimulator

pytestmark = pytest.mark.django_db(transaction=True)

BANGLA_2_PARTS = "প্রিয় গ্রাহক, আপনার বিল পরিশোধের শেষ তারিখ আগামীকাল। বকেয়া থাকলে সংযোগ বিচ্ছিন্ন হতে পারে। ধন্যবাদ।"


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


def balances(tenant):
    return credit.balance(tenant.pk), credit.held(tenant.pk), credit.sms_wallet(tenant.pk, credit.SPENT).balance


def drain(sender, until=lambda: False, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.run_once()
        reports.apply_reports()
        if until():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def env(sim):
    su = make_super()
    tenant, route = make_tenant(su, port=sim.port)
    sender = Sender(build_route_providers([route]), name="t1", batch_size=50, submit_timeout=5)
    sender.start()
    yield su, tenant, route, sender
    sender.stop()


def test_hold_then_charge_on_acceptance(env, sim):
    su, tenant, route, sender = env
    assert balances(tenant) == (Decimal("1000.00"), Decimal("0.00"), Decimal("0.00"))
    msg = queue_message(tenant=tenant, to="01711000001", text=BANGLA_2_PARTS, actor=su)
    assert (msg.parts, msg.encoding, msg.cost) == (2, "ucs2", Decimal("0.70"))
    assert balances(tenant) == (Decimal("999.30"), Decimal("0.70"), Decimal("0.00"))
    assert drain(sender, lambda: Message.objects.get(pk=msg.pk).state == Message.State.SUBMITTED)
    msg.refresh_from_db()
    assert msg.charged_at is not None and msg.refunded_at is None
    assert balances(tenant) == (Decimal("999.30"), Decimal("0.00"), Decimal("0.70"))
    assert len(sim.submits_to("8801711000001")) == 2
    assert sorted(msg.part_rows.values_list("index", flat=True)) == [0, 1]
    assert ledger_differences(tenant.pk) == {"wallets": [], "transactions": []}


def test_rejection_refunds_the_hold(env, sim):
    su, tenant, route, sender = env
    sim.configure("8801711000002", action="reject", status=0x0B)
    msg = queue_message(tenant=tenant, to="+8801711000002", text="Your bill is 500 BDT", actor=su)
    assert msg.cost == Decimal("0.35")
    assert drain(sender, lambda: Message.objects.get(pk=msg.pk).state == Message.State.REJECTED)
    msg.refresh_from_db()
    assert msg.refunded_at is not None and msg.charged_at is None
    assert balances(tenant) == (Decimal("1000.00"), Decimal("0.00"), Decimal("0.00"))
    assert LedgerTransaction.objects.filter(kind="sms.refund").count() == 1


def test_undelivered_receipt_refunds_the_charge(env, sim):
    su, tenant, route, sender = env
    sim.configure("8801711000003", dlr="late", dlr_stat="UNDELIV", dlr_err="001", dlr_delay=0.05)
    msg = queue_message(tenant=tenant, to="01711000003", text="Your bill is 500 BDT", actor=su)
    assert drain(sender, lambda: Message.objects.get(pk=msg.pk).state == Message.State.UNDELIVERED)
    msg.refresh_from_db()
    assert msg.charged_at is not None and msg.refunded_at is not None
    assert balances(tenant) == (Decimal("1000.00"), Decimal("0.00"), Decimal("0.00"))
    kinds = sorted(LedgerTransaction.objects.filter(tenant=tenant, kind__startswith="sms.")
                   .values_list("kind", flat=True))
    assert kinds == ["sms.charge", "sms.credit", "sms.hold", "sms.refund-spent"]


def test_delivered_receipt_keeps_the_charge(env, sim):
    su, tenant, route, sender = env
    sim.configure(dlr="late", dlr_delay=0.02)
    msg = queue_message(tenant=tenant, to="01711000004", text="Paid, thank you", actor=su)
    assert drain(sender, lambda: Message.objects.get(pk=msg.pk).state == Message.State.DELIVERED)
    assert balances(tenant) == (Decimal("999.65"), Decimal("0.00"), Decimal("0.35"))


def test_send_larger_than_balance_is_refused_before_anything(sim):
    su = make_super()
    tenant, route = make_tenant(su, "isp-poor", port=sim.port, credit_amount="0.50")
    with pytest.raises(InsufficientSmsCredit) as info:
        queue_message(tenant=tenant, to="01711000005", text=BANGLA_2_PARTS, actor=su)
    assert (info.value.needed, info.value.available) == (Decimal("0.70"), Decimal("0.50"))
    assert not Message.objects.exists()
    assert balances(tenant) == (Decimal("0.50"), Decimal("0.00"), Decimal("0.00"))
    campaign = create_campaign(tenant=tenant, actor=su, name="promo", body="অফার! Offer for {name}",
                               audience={"kind": "numbers", "numbers": ["01711000006", "01711000007"]})
    with pytest.raises(InsufficientSmsCredit):
        start_campaign(campaign, actor=su)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and not Message.objects.exists()
    assert balances(tenant) == (Decimal("0.50"), Decimal("0.00"), Decimal("0.00"))
    assert sim.submits == []


def test_credit_sale_is_idempotent_and_validated(sim):
    su = make_super()
    tenant, _ = make_tenant(su, "isp-sale", port=sim.port, credit_amount=None)
    credit.sell_credit(tenant, "250.00", actor=su, idempotency_key="inv-77")
    credit.sell_credit(tenant, "250.00", actor=su, idempotency_key="inv-77")
    assert credit.balance(tenant.pk) == Decimal("250.00")
    with pytest.raises(Exception, match="positive"):
        credit.sell_credit(tenant, "-5", actor=su, idempotency_key="neg")
