"""Topping up a reseller's balance: who may, from which account, idempotency, and the
customers per-minute billing suspended when that balance ran out coming back."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from rest_framework.test import APIClient

from ispcore.billing import minutes
from ispcore.billing.models import LedgerEntry, Wallet
from ispcore.billing.sales import top_up_node
from ispcore.billing.services import InsufficientFunds, ledger_differences
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer
from tests.world import build_world


@pytest.fixture
def world(db):
    return build_world()


def balance(world, node):
    return Wallet.objects.get(node=world[f"node:{node}"]).balance


def legs(txn):
    return {(e.wallet.system_code or e.wallet.node.name): e.amount
            for e in LedgerEntry.objects.filter(transaction=txn).select_related("wallet", "wallet__node")}


def test_admin_cash_top_up_credits_the_reseller_from_the_cash_account(world):
    before = balance(world, "r1")
    txn = top_up_node(world["node:r1"], "1500.50", actor=world["u:adminA"], idempotency_key="t1", method="cash",
                      reference="receipt 17")
    assert legs(txn) == {"cash": Decimal("-1500.50"), "R1": Decimal("1500.50")}
    assert balance(world, "r1") == before + Decimal("1500.50")
    again = top_up_node(world["node:r1"], "1500.50", actor=world["u:adminA"], idempotency_key="t1", method="cash")
    assert again.pk == txn.pk and again.replayed
    assert balance(world, "r1") == before + Decimal("1500.50")  # once
    assert not any(ledger_differences(world["tenant:A"].id).values())


def test_reseller_transfers_to_its_own_sub_reseller_only(world):
    top_up_node(world["node:r1"], "300", actor=world["u:adminA"], idempotency_key="fund", method="adjustment")
    r1 = balance(world, "r1")
    txn = top_up_node(world["node:s1"], "200", actor=world["u:r1"], idempotency_key="t2", method="transfer")
    assert legs(txn) == {"R1": Decimal("-200.00"), "S1": Decimal("200.00")}
    assert balance(world, "r1") == r1 - 200
    with pytest.raises(InsufficientFunds):  # a prepaid reseller cannot give what it does not have
        top_up_node(world["node:s1"], str(r1), actor=world["u:r1"], idempotency_key="t3", method="transfer")
    assert balance(world, "r1") == r1 - 200  # nothing written
    with pytest.raises(PermissionDenied):  # cash is the ISP's business, not the reseller's
        top_up_node(world["node:s1"], "10", actor=world["u:r1"], idempotency_key="t4", method="cash")
    with pytest.raises(PermissionDenied):  # not its own account
        top_up_node(world["node:r1"], "10", actor=world["u:r1"], idempotency_key="t5", method="transfer")
    with pytest.raises(PermissionDenied):  # another branch
        top_up_node(world["node:s2"], "10", actor=world["u:r1"], idempotency_key="t6", method="transfer")


@pytest.mark.parametrize(("actor", "node", "method"), [
    ("m0", "s1", "cash"),          # a manager without collect-cash
    ("m1", "s1", "adjustment"),    # a manager takes cash, not adjustments
    ("s1", "s1", "transfer"),      # nobody tops up itself
    ("d1", "d1", "transfer"),
    ("c1", "r1", "cash"),          # a customer
    ("adminB", "r1", "cash"),      # another ISP
    ("rB1", "r1", "transfer"),
])
def test_refused_actors_write_nothing(world, actor, node, method):
    count = LedgerEntry.objects.count()
    with pytest.raises(PermissionDenied):
        top_up_node(world[f"node:{node}"], "10", actor=world[f"u:{actor}"], idempotency_key="x", method=method)
    assert LedgerEntry.objects.count() == count


def test_manager_with_collect_cash_may_take_cash(world):
    txn = top_up_node(world["node:s1"], "50", actor=world["u:m1"], idempotency_key="m", method="cash")
    assert legs(txn) == {"cash": Decimal("-50.00"), "S1": Decimal("50.00")}


@pytest.mark.parametrize(("amount", "node", "method", "field"), [
    ("0", "r1", "cash", "amount"), ("-5", "r1", "cash", "amount"), ("5", "r1", "bitcoin", "method"),
    ("5", "rootA", "cash", "node"),
])
def test_bad_input_is_a_clear_error(world, amount, node, method, field):
    with pytest.raises(ValidationError) as info:
        top_up_node(world[f"node:{node}"], amount, actor=world["u:adminA"], idempotency_key="bad", method=method)
    assert field in info.value.message_dict


def test_customers_suspended_for_the_reseller_balance_come_back_after_a_top_up(world):
    r1 = world["node:r1"]
    own = world["cust:r1"]
    other = Customer.objects.create(
        tenant=own.tenant, node=r1, username="late-payer", password="x", customer_type="pppoe",
        full_name="Late payer", mobile="01719999999", package=own.package, expires_at=own.expires_at)
    lifecycle.suspend(own, reason=minutes.SUSPEND_REASON)
    lifecycle.suspend(other, reason="admin")  # suspended for another reason: stays
    wallet = Wallet.objects.get(node=r1)
    if wallet.balance > 0:  # empty it first: a top-up that leaves nothing to spend resumes no one
        top_up_node(world["node:s1"], str(wallet.balance), actor=world["u:r1"], idempotency_key="drain",
                    method="transfer")
    txn = top_up_node(r1, "100", actor=world["u:adminA"], idempotency_key="back", method="cash")
    assert txn.resumed == 1
    own.refresh_from_db()
    other.refresh_from_db()
    assert own.status == "active" and other.status == "suspended"


def test_api_top_up(world):
    client = APIClient()
    client.force_authenticate(world["u:adminA"])
    url = f"/api/v1/nodes/{world['node:r1'].pk}/top-up/"
    before = balance(world, "r1")
    first = client.post(url, {"amount": "250.00", "method": "cash", "idempotency_key": "k1"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["balance"] == str(before + 250) and first.json()["replayed"] is False
    second = client.post(url, {"amount": "250.00", "method": "cash", "idempotency_key": "k1"}, format="json")
    assert second.status_code == 200 and second.json()["transaction"] == first.json()["transaction"]
    assert balance(world, "r1") == before + 250
    bad = client.post(url, {"amount": "-1", "method": "cash", "idempotency_key": "k2"}, format="json")
    assert bad.status_code == 400 and "amount" in str(bad.json())

    reseller = APIClient()
    reseller.force_authenticate(world["u:r1"])
    refused = reseller.post(url, {"amount": "5", "method": "transfer", "idempotency_key": "k3"}, format="json")
    assert refused.status_code == 403
    hidden = reseller.post(f"/api/v1/nodes/{world['node:s2'].pk}/top-up/",
                           {"amount": "5", "method": "transfer", "idempotency_key": "k4"}, format="json")
    assert hidden.status_code == 404  # another branch: not even visible


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_transfers_never_overdraw_the_parent():
    world = build_world()
    top_up_node(world["node:r1"], "100", actor=world["u:adminA"], idempotency_key="seed", method="adjustment")
    available = Wallet.objects.get(node=world["node:r1"]).balance
    amount = (available / 2 + 1).quantize(Decimal("0.01"))  # each fits alone, not both
    outcomes = []
    barrier = threading.Barrier(2)

    def transfer(i):
        try:
            barrier.wait()
            top_up_node(world["node:s1"], amount, actor=world["u:r1"], idempotency_key=f"c{i}", method="transfer")
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused"]
    assert Wallet.objects.get(node=world["node:r1"]).balance == available - amount
    assert not any(ledger_differences(world["tenant:A"].id).values())
