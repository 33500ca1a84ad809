"""Events the SMS module needed emitted (card redeemed), and the one-click due reminder."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from ispcore.cards import services as cards
from ispcore.core.models import OutboxEvent
from notifications.campaigns import send_due_to_all
from notifications.models import Message, ProviderRoute, SenderId
from notifications.templates import _money
from notifications.transactional import process_outbox
from tests.cards.conftest import add_root_distributor, fund, sold_batch
from tests.world import build_world


@pytest.fixture
def world(db, settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    cache.clear()
    w = build_world()
    add_root_distributor(w)
    fund(w, w["wallet:d1"], "10000", "fund:d1")
    tenant = w["tenant:A"]
    route = ProviderRoute.objects.create(tenant=tenant, name="a-route", settings={"host": "127.0.0.1", "port": 1,
                                                                                  "system_id": "x"},
                                         price_per_part=Decimal("0.25"))
    SenderId.objects.create(tenant=tenant, value="ISPA", is_default=True, route=route)
    from notifications import credit

    credit.sell_credit(tenant, "100", actor=w["u:super"], idempotency_key="ev")
    yield w
    cache.clear()


def test_card_redemption_emits_an_event_that_becomes_one_sms(world):
    batch, pairs = sold_batch(world, count=1, value="50")
    cards.redeem_card(customer=world["cust:r1"], pin=pairs[0][1], actor=world["u:c1"])
    event = OutboxEvent.objects.get(kind="card.redeemed")
    assert event.customer_id == world["cust:r1"].pk and event.payload["amount"] == "50.00"
    assert event.payload["serial"] == pairs[0][0]
    process_outbox()
    msg = Message.objects.get(event_id=event.pk)
    assert "50.00" in msg.text and "রিচার্জ" in msg.text and msg.to_number == world["cust:r1"].mobile


def test_one_click_due_reminder_goes_to_customers_who_owe(world):
    from ispcore.billing.models import Wallet

    owing = {c for c, bal in Wallet.objects.filter(tenant=world["tenant:A"], customer__isnull=False)
             .values_list("customer_id", "balance") if bal < 0}
    assert owing, "the world has customers with a due (monthly invoices)"
    campaign = send_due_to_all(tenant=world["tenant:A"], actor=world["u:adminA"])
    msgs = list(Message.objects.filter(campaign=campaign))
    assert {m.customer_id for m in msgs} == owing
    for m in msgs:
        due = -Wallet.objects.get(customer_id=m.customer_id).balance
        assert f"বকেয়া {_money(due)} টাকা" in m.text
    assert not campaign.promotional and campaign.status == "running"
