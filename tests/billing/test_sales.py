"""Package sales through the reseller chain: exact amounts, expiry, idempotency, limits."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from ispcore.billing.models import LedgerEntry, PackageSale
from ispcore.billing.sales import SaleRefused, purchase_package, record_payment
from ispcore.billing.services import InsufficientFunds, ledger_differences, open_wallet, system_wallet
from ispcore.core.models import OutboxEvent
from ispcore.subscribers.models import Customer
from tests.billing.conftest import build_chain


def legs_of(sale) -> dict[str, Decimal]:
    names = {}
    for e in LedgerEntry.objects.filter(transaction=sale.transaction).select_related("wallet"):
        w = e.wallet
        key = w.system_code or (f"node:{w.node.name}" if w.node_id else f"customer:{w.customer.username}")
        names[key] = e.amount
    return names


def fund(chain, customer, amount):
    return record_payment(customer, Decimal(amount), method="cash", actor=chain["cash_manager"],
                          idempotency_key=f"fund:{customer.pk}:{amount}")


def test_three_level_commission_chain_paid_by_the_customer(chain):
    c = chain["customer"](chain["s"], "sub-cust", package=chain["monthly"])
    fund(chain, c, "1000")
    sale = purchase_package(c, chain["monthly"], actor=chain["admin"], idempotency_key="k1")
    assert sale.price == Decimal("1000.00")
    assert legs_of(sale) == {"customer:sub-cust": Decimal("-1000.00"), "node:S": Decimal("250.00"),
                             "node:R": Decimal("150.00"), "revenue": Decimal("600.00")}


def test_seller_pays_its_own_price_when_selling_for_cash(chain):
    c = chain["customer"](chain["s"], "cash-cust", package=chain["monthly"])
    sale = purchase_package(c, chain["monthly"], actor=chain["admin"], payer="node", idempotency_key="k2")
    assert sale.price == Decimal("750.00")
    assert legs_of(sale) == {"node:S": Decimal("-750.00"), "node:R": Decimal("150.00"), "revenue": Decimal("600.00")}
    assert open_wallet(tenant=chain["tenant"], node=chain["s"]).balance == Decimal("4250.00")


def test_direct_customer_of_the_isp(chain):
    c = chain["customer"](chain["root"], "direct", package=chain["week"])
    fund(chain, c, "300")
    sale = purchase_package(c, chain["week"], actor=chain["admin"], idempotency_key="k3")
    assert legs_of(sale) == {"customer:direct": Decimal("-200.00"), "revenue": Decimal("200.00")}
    assert open_wallet(tenant=chain["tenant"], customer=c).balance == Decimal("100.00")


def test_renewing_early_loses_no_days_and_expired_restarts_from_now(chain):
    now = timezone.now()
    early = chain["customer"](chain["root"], "early", expires_at=now + timedelta(days=2))
    fund(chain, early, "200")
    sale = purchase_package(early, chain["week"], actor=chain["admin"], idempotency_key="k4")
    assert sale.new_expiry == sale.previous_expiry + timedelta(days=7)
    late = chain["customer"](chain["root"], "late", expires_at=now - timedelta(days=5), status="expired")
    fund(chain, late, "200")
    before = timezone.now()
    sale = purchase_package(late, chain["week"], actor=chain["admin"], idempotency_key="k5")
    assert before + timedelta(days=7) <= sale.new_expiry <= timezone.now() + timedelta(days=7)
    late.refresh_from_db()
    assert late.status == "active"


def test_hour_packages_add_hours(chain):
    c = chain["customer"](chain["root"], "wifi", ctype="hotspot", package=chain["hours"],
                          expires_at=timezone.now() - timedelta(minutes=1))
    fund(chain, c, "80")
    before = timezone.now()
    sale = purchase_package(c, chain["hours"], actor=chain["admin"], idempotency_key="k6")
    assert before + timedelta(hours=24) <= sale.new_expiry <= timezone.now() + timedelta(hours=24)


def test_purchase_is_idempotent(chain):
    c = chain["customer"](chain["root"], "twice")
    fund(chain, c, "400")
    first = purchase_package(c, chain["week"], actor=chain["admin"], idempotency_key="same")
    again = purchase_package(c, chain["week"], actor=chain["admin"], idempotency_key="same")
    assert again.pk == first.pk and again.replayed
    c.refresh_from_db()
    assert c.expires_at == first.new_expiry
    assert open_wallet(tenant=chain["tenant"], customer=c).balance == Decimal("200.00")
    assert OutboxEvent.objects.filter(kind="package.purchased", customer_id=c.pk).count() == 1


def test_customer_without_balance_cannot_buy(chain):
    c = chain["customer"](chain["root"], "broke")
    with pytest.raises(InsufficientFunds):
        purchase_package(c, chain["week"], actor=chain["admin"], idempotency_key="k7")
    assert not PackageSale.objects.filter(customer=c).exists()


def test_prepaid_reseller_cannot_sell_past_its_balance(chain):
    c = chain["customer"](chain["r"], "r-cust")  # R has no balance
    with pytest.raises(InsufficientFunds):
        purchase_package(c, chain["week"], actor=chain["admin"], payer="node", idempotency_key="k8")
    c.refresh_from_db()
    assert not PackageSale.objects.exists() and c.package == chain["week"]


def test_postpaid_reseller_stops_at_its_credit_limit(chain):
    customers = [chain["customer"](chain["p"], f"p{i}") for i in range(11)]
    for i, c in enumerate(customers[:10]):
        purchase_package(c, chain["week"], actor=chain["admin"], payer="node", idempotency_key=f"pp{i}")
    assert open_wallet(tenant=chain["tenant"], node=chain["p"]).balance == Decimal("-1400.00")
    with pytest.raises(InsufficientFunds):
        purchase_package(customers[10], chain["week"], actor=chain["admin"], payer="node", idempotency_key="pp10")


def test_package_not_sold_at_this_level_is_refused(chain):
    c = chain["customer"](chain["s"], "s-week")  # S has no price for the weekly package
    with pytest.raises(SaleRefused, match="does not sell"):
        purchase_package(c, chain["week"], actor=chain["admin"], payer="node", idempotency_key="k9")


def test_who_may_sell(chain):
    from ispcore.accounts import services as accounts

    c = chain["customer"](chain["s"], "perm", package=chain["monthly"])
    other_reseller = accounts.create_user(actor=chain["admin"], username="puser", password="Chain-Pass-2026",
                                          role="reseller", node=chain["p"])
    with pytest.raises(PermissionDenied):
        purchase_package(c, chain["monthly"], actor=other_reseller, payer="node", idempotency_key="k10")
    assert not PackageSale.objects.exists()


def test_speed_change_queues_a_coa_for_a_live_customer(chain, django_capture_on_commit_callbacks, monkeypatch):
    calls = []
    monkeypatch.setattr("ispcore.subscribers.tasks.refresh_speed.delay", lambda cid: calls.append(cid))
    c = chain["customer"](chain["root"], "speedy", package=chain["monthly"],
                          expires_at=timezone.now() + timedelta(days=10))
    fund(chain, c, "1500")
    with django_capture_on_commit_callbacks(execute=True):
        purchase_package(c, chain["fast"], actor=chain["admin"], idempotency_key="k11")
    assert calls == [c.pk]


def test_renewing_an_expired_customer_refreshes_the_routers(chain, django_capture_on_commit_callbacks, monkeypatch):
    """Back online -> off the routers' expired address list at the next (debounced) sync."""
    calls = []
    monkeypatch.setattr("ispcore.subscribers.access.queue_router_syncs", lambda tenant_id: calls.append(tenant_id))
    live = chain["customer"](chain["root"], "live", expires_at=timezone.now() + timedelta(days=3))
    gone = chain["customer"](chain["root"], "gone", expires_at=timezone.now() - timedelta(days=1), status="expired")
    fund(chain, live, "200")
    fund(chain, gone, "200")
    with django_capture_on_commit_callbacks(execute=True):
        purchase_package(live, chain["week"], actor=chain["admin"], idempotency_key="k12")
    assert calls == []  # was allowed online already: nothing changes on the routers
    with django_capture_on_commit_callbacks(execute=True):
        purchase_package(gone, chain["week"], actor=chain["admin"], idempotency_key="k13")
    assert calls == [chain["tenant"].id]


@pytest.mark.django_db(transaction=True)
def test_hundred_concurrent_sales_by_a_prepaid_reseller_with_balance_for_sixty():
    chain = build_chain(reseller_balance=str(150 * 60))
    customers = [chain["customer"](chain["r"], f"race{i}") for i in range(100)]
    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def sell(batch):
        try:
            barrier.wait()
            for c in batch:
                try:
                    purchase_package(c, chain["week"], actor=chain["admin"], payer="node",
                                     idempotency_key=f"race:{c.pk}")
                    outcomes.append("ok")
                except InsufficientFunds:
                    outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=sell, args=(customers[i::10],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 60 and outcomes.count("refused") == 40
    assert PackageSale.objects.count() == 60
    wallet = open_wallet(tenant=chain["tenant"], node=chain["r"])
    assert wallet.balance == Decimal("0.00")
    assert system_wallet(chain["tenant"], "revenue").balance == Decimal("9000.00")
    assert not any(ledger_differences().values())
    extended = Customer.objects.filter(sales__isnull=False).count()
    assert extended == 60
