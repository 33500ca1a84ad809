"""50 concurrent redemptions of one card on PostgreSQL: exactly one succeeds, the ledger
shows one credit, and every balance still equals its entries."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from ispcore.billing.models import LedgerEntry, LedgerTransaction
from ispcore.billing.services import ledger_differences, open_wallet, system_wallet
from ispcore.cards import services as cards
from ispcore.cards.models import CardStatus, RechargeCard
from ispcore.subscribers import services as subscribers
from tests.world import build_world

from .conftest import add_root_distributor, fund, pins_of

THREADS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_redemptions_of_one_card():
    assert connection.vendor == "postgresql"
    w = build_world()
    add_root_distributor(w)
    fund(w, w["wallet:d1"], "1000", "fund:d1")
    batch = cards.generate_batch(actor=w["u:r1"], issuer=w["node:r1"], count=1, face_value=Decimal("75"),
                                 validity_days=30)
    serial, pin = pins_of(batch)[0]
    cards.sell_batch_to_distributor(batch, actor=w["u:r1"], distributor=w["node:d1"], commission_percent=Decimal("4"))
    # 50 customers of r1's subtree race for the card, from 50 addresses (each attempt is
    # counted against the wrong-PIN budget while in flight, so one customer cannot fire 50)
    customers = [
        subscribers.create_customer(
            actor=w["u:super"], tenant=w["tenant:A"], node=w["node:r1" if i % 2 else "node:s1"],
            username=f"racer{i:02d}", password="cpass1", customer_type="pppoe", full_name=f"Racer {i}",
            mobile=f"0181{i:07d}", package=w["pkg:A1"],
        )
        for i in range(THREADS)
    ]
    wallets = {c.pk: open_wallet(tenant=c.tenant, customer=c) for c in customers}
    before = {pk: wl.balance for pk, wl in wallets.items()}

    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            customer = customers[i]
            barrier.wait(timeout=30)
            try:
                cards.redeem_card(customer=customer, pin=pin, actor=None, source=f"10.0.{i // 256}.{i % 256}")
                outcome = f"ok:{customer.pk}"
            except cards.CardRefused as exc:
                outcome = exc.reason
            except Exception as exc:  # anything else is a failure of the guarantee
                outcome = f"error:{type(exc).__name__}:{exc}"
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(outcomes) == THREADS
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1, outcomes
    assert sorted(set(outcomes) - set(winners)) == ["used"], outcomes
    winner_pk = int(winners[0].split(":")[1])

    card = RechargeCard.objects.get(serial=serial)
    assert card.status == CardStatus.USED and card.used_by_id == winner_pk
    txns = LedgerTransaction.objects.filter(kind="card_redeem")
    assert [t.idempotency_key for t in txns] == [f"card:redeem:{card.pk}"]
    float_w = system_wallet(w["tenant:A"], "card_float")
    assert LedgerEntry.objects.filter(transaction__in=txns, wallet=float_w).get().amount == Decimal("-75.00")
    for pk, wl in wallets.items():
        wl.refresh_from_db()
        assert wl.balance == before[pk] + (Decimal("75.00") if pk == winner_pk else 0)
    float_w.refresh_from_db()
    assert float_w.balance == Decimal("0.00")
    assert ledger_differences() == {"wallets": [], "transactions": []}


def test_a_burst_of_wrong_pins_checks_at_most_the_limit(world):
    """20 simultaneous guesses by one customer: at most 5 PINs are looked up, the rest are refused."""
    customer = world["cust:r1"]
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            try:
                cards.redeem_card(customer=customer, pin=f"{i:016d}", actor=None, source=f"192.0.2.{i}")
                outcome = "ok"
            except cards.CardRefused as exc:
                outcome = exc.reason
            except cards.CardRateLimited:
                outcome = "limited"
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(set(outcomes)) == ["limited", "wrong_pin"]
    assert outcomes.count("wrong_pin") == cards.PIN_MAX_FAILURES
    assert outcomes.count("limited") == 20 - cards.PIN_MAX_FAILURES
