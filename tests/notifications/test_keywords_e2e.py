"""Keyword commands end to end: an incoming deliver_sm pushed by the SMSC simulator
(push_mo) -> stored in the inbox by the provider's I/O thread -> handled by the inbox
worker -> the reply queued on the same line -> the reply submit_sm seen by the simulator.
Real PostgreSQL, real Redis (card PIN limits), real SMPP over TCP."""
from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from ispcore.billing.models import Wallet
from ispcore.cards.models import RechargeCard
from notifications import credit, inbox, reports
from notifications.campaigns import create_campaign, start_campaign
from notifications.models import (
    InboundMessage,
    KeywordRule,
    Message,
    OptOut,
    ProviderRoute,
    SenderId,
    SmsProfile,
    SupportTicket,
)
from notifications.services import queue_message
from notifications.worker import Sender, build_route_providers
from radius.models import DailyUsage
from tests.cards.conftest import add_root_distributor, fund, sold_batch
from tests.peers.smsc import SMSCSimulator
from tests.world import build_world

pytestmark = pytest.mark.django_db(transaction=True)

LINE = "8809612345678"


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


@pytest.fixture
def env(sim):
    cache.clear()
    w = build_world()
    # the world's sample messages and inbox rows (for the authz matrix) must not go out or be counted here
    Message.objects.all().delete()
    InboundMessage.objects.all().delete()
    tenant = w["tenant:A"]
    route = ProviderRoute.objects.create(
        tenant=tenant, name="sim-inbox", kind="smpp", secret="secret",
        settings={"host": "127.0.0.1", "port": sim.port, "system_id": "ispsms", "reconnect_initial": 0.05,
                  "reconnect_max": 0.5, "bind_wait": 5.0, "response_timeout": 5.0},
        price_per_part=Decimal("0.25"), window=10)
    SmsProfile.objects.update_or_create(tenant=tenant, defaults={"default_route": route})
    line = SenderId.objects.create(tenant=tenant, value=LINE, line_type=SenderId.LineType.DEDICATED, route=route)
    credit.sell_credit(tenant, Decimal("100"), actor=w["u:super"], idempotency_key="inbox-test")
    sender = Sender(build_route_providers([route]), name="inbox-test", batch_size=20, submit_timeout=5)
    sender.start()
    assert sim.wait_bound(1)
    w.update(route=route, line=line, sender=sender)
    yield w
    sender.stop()
    cache.clear()


def handset(w, name: str) -> str:
    return w[f"cust:{name}"].mobile.lstrip("+")


def run_until(sender, predicate, seconds: float = 10.0) -> bool:
    """What the Celery inbox task and the SMS worker do, in a loop, until ``predicate``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        inbox.process_pending()
        sender.run_once()
        reports.apply_reports()
        if predicate():
            return True
        time.sleep(0.05)
    return False


def ask(w, sim, number: str, text: str, *, replies: int = 1) -> list[str]:
    """Push ``text`` from ``number`` to the line; wait for ``replies`` replies; return the reply texts."""
    before = len(sim.texts(number))
    sim.push_mo(number, LINE, text)
    assert run_until(w["sender"], lambda: len(sim.texts(number)) >= before + replies), \
        list(InboundMessage.objects.values_list("status", "error", "data"))
    return sim.texts(number)[before:]


def last_inbound() -> InboundMessage:
    return InboundMessage.objects.order_by("-id").first()


def settled(number: str, count: int = 1):
    """A predicate: ``count`` texts from ``number`` are stored and no longer new."""
    return lambda: InboundMessage.objects.filter(from_number=number).exclude(status="new").count() >= count


def test_bal_replies_with_due_and_expiry_on_the_same_line(env, sim):
    w = env
    cust = w["cust:s1"]
    wallet = Wallet.objects.get(customer=cust)
    wallet_due = -wallet.balance if wallet.balance < 0 else Decimal("0")
    (reply,) = ask(w, sim, handset(w, "s1"), "bal")
    expiry = timezone.localtime(cust.expires_at, w["tenant:A"].tzinfo).strftime("%d-%m-%Y %H:%M")
    assert expiry in reply and cust.full_name in reply
    assert f"বকেয়া {wallet_due:.0f} টাকা" in reply or f"বকেয়া {wallet_due:.2f} টাকা" in reply
    submit = sim.submits_to(handset(w, "s1"))[-1]
    assert submit.source_addr == LINE  # answered through the line it came in on
    row = last_inbound()
    assert row.status == InboundMessage.Status.HANDLED and row.customer == cust and row.line == w["line"]
    assert row.reply.kind == Message.Kind.REPLY and row.reply.text == reply


def test_separators_case_and_bangla_alias(env, sim):
    w = env
    SmsProfile.objects.filter(tenant=w["tenant:A"]).update(keyword_separators="#*")
    (reply,) = ask(w, sim, handset(w, "r1"), "  Usage#now")
    assert "GB" in reply
    (reply_bn,) = ask(w, sim, handset(w, "r1"), "ব্যবহার")
    assert reply_bn == reply


def test_usage_sums_this_months_daily_usage(env, sim):
    w = env
    cust = w["cust:r1"]
    today = timezone.localtime(timezone.now(), w["tenant:A"].tzinfo).date()
    DailyUsage.objects.create(tenant_id=cust.tenant_id, customer=cust, day=today, input_octets=1_000_000_000,
                              output_octets=2_500_000_000)
    DailyUsage.objects.create(tenant_id=cust.tenant_id, customer=cust, day=today.replace(day=1) - timedelta(days=1),
                              input_octets=9_000_000_000, output_octets=0)  # last month: not counted
    (reply,) = ask(w, sim, handset(w, "r1"), "USAGE")
    assert "3.50 GB" in reply


def test_stop_opts_out_of_the_next_campaign_but_transactional_still_goes(env, sim):
    w = env
    number = handset(w, "r2")
    (reply,) = ask(w, sim, number, "stop")
    assert "START" in reply
    assert OptOut.objects.filter(tenant=w["tenant:A"], number="+" + number).exists()
    campaign = create_campaign(tenant=w["tenant:A"], actor=w["u:adminA"], name="offer",
                               body="নতুন অফার! {name}", sender=w["line"],
                               audience={"kind": "numbers", "numbers": ["+" + number, "+" + handset(w, "s2")]})
    start_campaign(campaign, actor=w["u:adminA"])
    assert run_until(w["sender"], lambda: len(sim.texts(handset(w, "s2"))) == 1)
    assert not any("অফার" in t for t in sim.texts(number))
    transactional = queue_message(tenant=w["tenant:A"], to="+" + number, text="Payment received, thank you",
                                  kind=Message.Kind.TRANSACTIONAL, sender=w["line"],
                                  check_actor_sender=False)
    assert run_until(w["sender"], lambda: "Payment received, thank you" in sim.texts(number))
    assert Message.objects.get(pk=transactional.pk).state != Message.State.BLOCKED
    (reply,) = ask(w, sim, number, "Start")
    assert "STOP" in reply
    assert not OptOut.objects.filter(tenant=w["tenant:A"], number="+" + number).exists()


def test_help(env, sim):
    w = env
    (reply,) = ask(w, sim, handset(w, "r1"), "help")
    assert "RECHARGE" in reply and "BAL" in reply


def test_recharge_pin_redeems_the_card_once(env, sim):
    w = env
    add_root_distributor(w)
    fund(w, w["wallet:d1"], "10000", "fund:d1")
    _batch, pairs = sold_batch(w, issuer="r1", distributor="d1", count=1, value="50")
    serial, pin = pairs[0]
    cust = w["cust:r1"]
    before = Wallet.objects.get(customer=cust).balance
    (reply,) = ask(w, sim, handset(w, "r1"), f"RECHARGE {pin}")
    assert "50" in reply and "সফল" in reply
    card = RechargeCard.objects.get(serial=serial)
    assert card.status == "used" and card.used_by_id == cust.pk
    assert Wallet.objects.get(customer=cust).balance == before + Decimal("50")
    (again,) = ask(w, sim, handset(w, "r1"), f"রিচার্জ {pin}")
    assert "আগেই ব্যবহার" in again
    assert Wallet.objects.get(customer=cust).balance == before + Decimal("50")
    (wrong,) = ask(w, sim, handset(w, "r1"), "recharge 000000000000")
    assert "পিন সঠিক নয়" in wrong
    assert last_inbound().data["recharge"] == "wrong_pin"


def test_contains_rule_opens_a_support_ticket(env, sim):
    w = env
    KeywordRule.objects.create(tenant=w["tenant:A"], keyword="internet nai", aliases=["নেট নেই"],
                               match=KeywordRule.Match.CONTAINS, action=KeywordRule.Action.TICKET)
    (reply,) = ask(w, sim, handset(w, "s2"), "Amar basay internet nai 2 din")
    ticket = SupportTicket.objects.get()
    assert ticket.customer == w["cust:s2"] and ticket.inbound == last_inbound()
    assert str(ticket.pk) in reply
    (reply_bn,) = ask(w, sim, handset(w, "s2"), "সকাল থেকে নেট নেই")
    assert SupportTicket.objects.count() == 2 and str(SupportTicket.objects.first().pk) in reply_bn


def test_unknown_sender_gets_the_configured_reply_or_nothing(env, sim):
    w = env
    stranger = "8801999000111"
    sim.push_mo(stranger, LINE, "BAL")
    assert run_until(w["sender"], settled(stranger))
    time.sleep(0.3)
    w["sender"].run_once()
    assert sim.texts(stranger) == []  # nothing configured: nothing sent, nothing charged
    assert last_inbound().data["reason"] == "unknown sender"
    SmsProfile.objects.filter(tenant=w["tenant:A"]).update(
        unknown_sender_reply="This number is not registered with ISP A. Call 16000.")
    (reply,) = ask(w, sim, stranger, "bal")
    assert reply == "This number is not registered with ISP A. Call 16000."


def test_unmatched_text_stays_in_the_inbox_unanswered(env, sim):
    w = env
    sim.push_mo(handset(w, "r1"), LINE, "hello, who is this?")
    assert run_until(w["sender"], settled(handset(w, "r1")))
    assert last_inbound().status == "ignored"
    assert sim.texts(handset(w, "r1")) == []


def test_no_credit_the_action_still_happens_and_the_row_says_why(env, sim):
    w = env
    tenant = w["tenant:A"]
    Message.objects.all().delete()
    # spend the whole balance: a reply cannot be held
    credit.hold(tenant.pk, credit.balance(tenant.pk), key="drain-all")
    number = handset(w, "r2")
    sim.push_mo(number, LINE, "STOP")
    assert run_until(w["sender"], settled(number))
    row = last_inbound()
    assert row.status == "handled" and row.reply is None and "reply not sent" in row.error
    assert OptOut.objects.filter(tenant=tenant, number="+" + number).exists()


def test_a_line_owned_by_nobody_keeps_the_message(env, sim):
    w = env
    sim.push_mo(handset(w, "r1"), "8809999999999", "BAL")
    assert run_until(w["sender"], lambda: InboundMessage.objects.filter(to_number="8809999999999").exists())
    row = InboundMessage.objects.get(to_number="8809999999999")
    assert row.tenant is None and row.status == "ignored"
