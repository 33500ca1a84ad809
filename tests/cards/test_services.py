"""Card services: generation, the exact money of a sale and a redemption, the state
machine and its refusals, expiry, void, and the wrong-PIN limits."""
from __future__ import annotations

import importlib.util
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from ispcore.billing.models import LedgerTransaction
from ispcore.billing.services import InsufficientFunds, ledger_differences, open_wallet, system_wallet
from ispcore.cards import services as cards
from ispcore.cards.models import CardBatch, CardBatchDownload, CardStatus, RechargeCard
from ispcore.cards.pins import hash_pin

from .conftest import pins_of, sold_batch

D = Decimal


def legs(key: str) -> dict[int, Decimal]:
    txn = LedgerTransaction.objects.get(idempotency_key=key)
    return {e.wallet_id: e.amount for e in txn.entries.all()}


def balance(wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance


def refusal(exc_info) -> str:
    return exc_info.value.reason


# ---------------------------------------------------------------- generation

def test_generation_stores_only_keyed_hashes(world):
    batch = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=25, face_value=D("100"),
                                 validity_days=30)
    pairs = pins_of(batch)
    assert len(pairs) == 25 and len({p for _, p in pairs}) == 25
    assert all(len(p) == 16 and p.isdigit() for _, p in pairs)
    rows = list(RechargeCard.objects.filter(batch=batch).values_list("serial", "pin_hash", "status"))
    by_serial = {s: h for s, h, _ in rows}
    for serial, pin in pairs:
        assert by_serial[serial] == hash_pin(batch.tenant_id, pin)
        assert pin not in by_serial[serial]
    assert {st for _, _, st in rows} == {CardStatus.UNISSUED}
    token = CardBatchDownload.objects.get(batch=batch).token
    assert pairs[0][1] not in token  # kept encrypted
    assert batch.face_value == D("100.00") and batch.status == CardStatus.UNISSUED


def test_generation_refusals(world):
    with pytest.raises(cards.CardRefused) as e:
        cards.generate_batch(actor=world["u:d1"], issuer=world["node:d1"], count=1, face_value=D("1"), validity_days=1)
    assert refusal(e) == "bad_issuer"
    with pytest.raises(cards.CardRefused) as e:  # another branch
        cards.generate_batch(actor=world["u:r2"], issuer=world["node:r1"], count=1, face_value=D("1"), validity_days=1)
    assert refusal(e) == "forbidden"
    with pytest.raises(cards.CardRefused) as e:
        cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=0, face_value=D("1"), validity_days=1)
    assert refusal(e) == "bad_count"
    with pytest.raises(cards.CardRefused) as e:
        cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, face_value=D("1"),
                             valid_until=timezone.now() - timedelta(minutes=1))
    assert refusal(e) == "bad_validity"
    with pytest.raises(cards.CardRefused) as e:
        cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, face_value=D("1"), validity_days=1,
                             pin_length=11)
    assert refusal(e) == "bad_pin_length"
    assert not CardBatch.objects.exclude(memo="world").exists()


def test_package_card_value_is_the_issuers_customer_price(world):
    batch = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, package=world["pkg:A1"],
                                 validity_days=30)
    assert batch.kind == "package" and batch.face_value == D("500.00")  # r1's customer_price, not the list price
    with pytest.raises(cards.CardRefused) as e:  # r1 has no price for A2
        cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, package=world["pkg:A2"],
                             validity_days=30)
    assert refusal(e) == "bad_package"


# ---------------------------------------------------------------- the money of a sale

def test_sale_under_the_root_exact_legs(world):
    batch, _ = sold_batch(world, issuer="rootA", distributor="d0", count=3, value="100", pct="12.5")
    float_w = system_wallet(world["tenant:A"], "card_float")
    revenue = world["wallet:sysA:revenue"]
    assert legs(f"card:sell:{batch.pk}") == {
        world["wallet:d0"].pk: D("-262.50"),
        revenue.pk: D("-37.50"),
        float_w.pk: D("300.00"),
    }
    assert balance(world["wallet:d0"]) == D("9737.50")
    assert balance(float_w) == D("300.00")
    assert (batch.status, batch.sold_count, batch.commission, batch.sale_price) == ("sold", 3, D("37.50"), D("262.50"))
    assert set(batch.cards.values_list("status", flat=True)) == {CardStatus.SOLD}


def test_sale_under_a_reseller_exact_legs_with_rounding(world):
    # F = 7 x 33.33 = 233.31; c = 7.5% of F = 17.49825 -> 17.50; the distributor pays 215.81
    d1_before, r1_before = balance(world["wallet:d1"]), balance(world["wallet:r1"])
    batch, _ = sold_batch(world, issuer="r1", distributor="d1", count=7, value="33.33", pct="7.5")
    float_w = system_wallet(world["tenant:A"], "card_float")
    assert legs(f"card:sell:{batch.pk}") == {
        world["wallet:d1"].pk: D("-215.81"),
        world["wallet:r1"].pk: D("-17.50"),
        float_w.pk: D("233.31"),
    }
    assert balance(world["wallet:d1"]) == d1_before - D("215.81")
    assert balance(world["wallet:r1"]) == r1_before - D("17.50")
    assert ledger_differences()["wallets"] == []


def test_sale_without_commission_has_no_issuer_leg(world):
    batch, _ = sold_batch(world, issuer="r1", distributor="d1", count=2, value="10", pct="0")
    assert sorted(legs(f"card:sell:{batch.pk}").values()) == [D("-20.00"), D("20.00")]


def test_sale_refusals(world):
    batch, _ = sold_batch(world)
    with pytest.raises(cards.CardRefused) as e:  # sell twice
        cards.sell_batch_to_distributor(batch, actor=world["u:r1"], distributor=world["node:d1"])
    assert refusal(e) == "bad_state"
    assert LedgerTransaction.objects.filter(kind="card_sale").count() == 1
    other = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, face_value=D("5"),
                                 validity_days=5)
    with pytest.raises(cards.CardRefused) as e:  # d2 hangs under r2, not under the issuer r1
        cards.sell_batch_to_distributor(other, actor=world["u:r1"], distributor=world["node:d2"])
    assert refusal(e) == "bad_distributor"
    with pytest.raises(cards.CardRefused) as e:  # a reseller is no distributor
        cards.issue_batch(other, actor=world["u:r1"], distributor=world["node:s1"])
    assert refusal(e) == "bad_distributor"
    with pytest.raises(cards.CardRefused) as e:  # another branch's reseller
        cards.sell_batch_to_distributor(other, actor=world["u:r2"], distributor=world["node:d1"])
    assert refusal(e) == "forbidden"
    big_value = balance(world["wallet:d1"]) / 2 + 1
    big = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=2, face_value=big_value,
                               validity_days=5)
    with pytest.raises(InsufficientFunds):  # two cards cost more than d1 holds
        cards.sell_batch_to_distributor(big, actor=world["u:r1"], distributor=world["node:d1"])
    big.refresh_from_db()
    assert big.status == CardStatus.UNISSUED and big.distributor_id is None
    assert set(big.cards.values_list("status", flat=True)) == {CardStatus.UNISSUED}


def test_issue_then_sell(world):
    batch = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=2, face_value=D("20"),
                                 validity_days=5)
    batch = cards.issue_batch(batch, actor=world["u:r1"], distributor=world["node:d1"])
    assert batch.status == CardStatus.ISSUED
    assert set(batch.cards.values_list("status", flat=True)) == {CardStatus.ISSUED}
    with pytest.raises(cards.CardRefused) as e:
        cards.issue_batch(batch, actor=world["u:r1"], distributor=world["node:d1"])
    assert refusal(e) == "bad_state"
    batch = cards.sell_batch_to_distributor(batch, actor=world["u:r1"], commission_percent=D("5"))
    assert batch.status == CardStatus.SOLD and batch.commission == D("2.00") and batch.sale_price == D("38.00")


# ---------------------------------------------------------------- redemption

def test_value_redemption_moves_face_value_from_float_to_customer(world):
    batch, pairs = sold_batch(world, count=2, value="50")
    cust = world["cust:r1"]
    before = balance(world["wallet:cust:r1"])
    result = cards.redeem_card(customer=cust, pin=pairs[0][1], actor=world["u:c1"], source="198.51.100.7")
    card = RechargeCard.objects.get(serial=pairs[0][0])
    assert result.amount == D("50.00") and card.status == CardStatus.USED and card.used_by_id == cust.pk
    assert card.used_at is not None
    float_w = system_wallet(world["tenant:A"], "card_float")
    assert legs(f"card:redeem:{card.pk}") == {float_w.pk: D("-50.00"), world["wallet:cust:r1"].pk: D("50.00")}
    assert balance(world["wallet:cust:r1"]) == before + D("50.00")
    assert balance(float_w) == D("50.00")  # the other card is still outstanding
    # a sub-reseller's customer (inside r1's subtree) may redeem r1's card; spaces in the PIN are fine
    pin = pairs[1][1]
    cards.redeem_card(customer=world["cust:s1"], pin=f"{pin[:4]} {pin[4:8]}-{pin[8:]}", actor=None)
    assert balance(float_w) == D("0.00")
    with pytest.raises(cards.CardRefused) as e:
        cards.redeem_card(customer=cust, pin=pairs[0][1], actor=world["u:c1"])
    assert refusal(e) == "used"
    assert LedgerTransaction.objects.filter(kind="card_redeem").count() == 2
    assert ledger_differences() == {"wallets": [], "transactions": []}


def test_redeem_outside_the_issuers_subtree_or_tenant_is_refused(world):
    _, pairs = sold_batch(world, count=1)
    with pytest.raises(cards.CardRefused) as e:
        cards.redeem_card(customer=world["cust:r2"], pin=pairs[0][1], actor=world["u:c2"])
    assert refusal(e) == "not_here"
    with pytest.raises(cards.CardRefused) as e:  # tenant B: the PIN is simply unknown there
        cards.redeem_card(customer=world["cust:rB1"], pin=pairs[0][1], actor=None)
    assert refusal(e) == "wrong_pin"
    assert RechargeCard.objects.get(serial=pairs[0][0]).status == CardStatus.SOLD


def test_redeem_unsold_issued_expired_and_void_cards_is_refused(world):
    unissued = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, face_value=D("5"),
                                    validity_days=5)
    pin_unissued = pins_of(unissued)[0][1]
    issued = cards.issue_batch(
        cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, face_value=D("5"), validity_days=5),
        actor=world["u:r1"], distributor=world["node:d1"])
    pin_issued = pins_of(issued)[0][1]
    cust = world["cust:r1"]
    for pin in (pin_unissued, pin_issued):
        with pytest.raises(cards.CardRefused) as e:
            cards.redeem_card(customer=cust, pin=pin, actor=None)
        assert refusal(e) == "not_sold"

    expired, exp_pairs = sold_batch(world, count=2, value="40")
    CardBatch.objects.filter(pk=expired.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    with pytest.raises(cards.CardRefused) as e:  # refused before the expiry task has run
        cards.redeem_card(customer=cust, pin=exp_pairs[0][1], actor=None)
    assert refusal(e) == "expired"

    void, void_pairs = sold_batch(world, count=1, value="30")
    cards.void_card(RechargeCard.objects.get(serial=void_pairs[0][0]), actor=world["u:r1"], reason="stolen")
    with pytest.raises(cards.CardRefused) as e:
        cards.redeem_card(customer=cust, pin=void_pairs[0][1], actor=None)
    assert refusal(e) == "void"
    assert not LedgerTransaction.objects.filter(kind="card_redeem").exists()


def test_expiry_releases_the_float_to_the_issuer_once(world):
    batch, pairs = sold_batch(world, count=3, value="40", pct="10")
    cards.redeem_card(customer=world["cust:r1"], pin=pairs[0][1], actor=None)
    float_w = system_wallet(world["tenant:A"], "card_float")
    r1_before = balance(world["wallet:r1"])
    unsold = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=2, face_value=D("9"),
                                  validity_days=1)
    assert cards.expire_due_batches() == 0
    past = timezone.now() - timedelta(seconds=1)
    CardBatch.objects.filter(pk__in=[batch.pk, unsold.pk]).update(valid_until=past)
    assert cards.expire_due_batches() == 4  # 2 sold + 2 unissued
    assert legs(f"card:expire:{batch.pk}") == {float_w.pk: D("-80.00"), world["wallet:r1"].pk: D("80.00")}
    assert balance(float_w) == D("0.00")
    assert balance(world["wallet:r1"]) == r1_before + D("80.00")
    assert dict(batch.cards.values_list("serial", "status")) == {
        pairs[0][0]: "used", pairs[1][0]: "expired", pairs[2][0]: "expired"}
    assert set(unsold.cards.values_list("status", flat=True)) == {"expired"}
    assert cards.expire_due_batches() == 0  # idempotent
    assert LedgerTransaction.objects.filter(kind="card_expiry").count() == 1
    with pytest.raises(cards.CardRefused) as e:
        cards.redeem_card(customer=world["cust:r1"], pin=pairs[1][1], actor=None)
    assert refusal(e) == "expired"
    with pytest.raises(cards.CardRefused) as e:
        cards.void_batch(batch, actor=world["u:r1"])
    assert refusal(e) == "bad_state"


def test_void_card_and_batch(world):
    batch, pairs = sold_batch(world, count=3, value="25")
    float_w = system_wallet(world["tenant:A"], "card_float")
    card = RechargeCard.objects.get(serial=pairs[0][0])
    cards.void_card(card, actor=world["u:r1"])
    assert legs(f"card:void:{card.pk}") == {float_w.pk: D("-25.00"), world["wallet:r1"].pk: D("25.00")}
    with pytest.raises(cards.CardRefused) as e:  # void twice
        cards.void_card(card, actor=world["u:r1"])
    assert refusal(e) == "bad_state"
    cards.redeem_card(customer=world["cust:r1"], pin=pairs[1][1], actor=None)
    with pytest.raises(cards.CardRefused) as e:  # a used card stays used
        cards.void_card(RechargeCard.objects.get(serial=pairs[1][0]), actor=world["u:r1"])
    assert refusal(e) == "bad_state"
    with pytest.raises(cards.CardRefused) as e:
        cards.void_batch(batch, actor=world["u:r2"])
    assert refusal(e) == "forbidden"
    cards.void_batch(batch, actor=world["u:r1"])
    assert legs(f"card:void-batch:{batch.pk}") == {float_w.pk: D("-25.00"), world["wallet:r1"].pk: D("25.00")}
    assert balance(float_w) == D("0.00")
    assert dict(batch.cards.values_list("serial", "status")) == {
        pairs[0][0]: "void", pairs[1][0]: "used", pairs[2][0]: "void"}
    with pytest.raises(cards.CardRefused) as e:
        cards.sell_batch_to_distributor(batch, actor=world["u:r1"])
    assert refusal(e) == "bad_state"
    assert ledger_differences() == {"wallets": [], "transactions": []}


def test_database_refuses_a_used_card_without_customer(world):
    _, pairs = sold_batch(world, count=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        RechargeCard.objects.filter(serial=pairs[0][0]).update(status=CardStatus.USED)


def test_package_card_credits_the_price_and_activates_when_sales_exists(world):
    batch = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, package=world["pkg:A1"],
                                 validity_days=30)
    pin = pins_of(batch)[0][1]
    cards.sell_batch_to_distributor(batch, actor=world["u:r1"], distributor=world["node:d1"],
                                    commission_percent=D("10"))
    wallet = open_wallet(tenant=world["tenant:A"], customer=world["cust:r1"])
    before = balance(wallet)
    result = cards.redeem_card(customer=world["cust:r1"], pin=pin, actor=world["u:c1"])
    card = RechargeCard.objects.get(batch=batch)
    assert legs(f"card:redeem:{card.pk}")[wallet.pk] == D("500.00")
    if importlib.util.find_spec("ispcore.billing.sales") is None:
        assert result.activation_pending is True and balance(wallet) == before + D("500.00")
    else:
        assert result.activation_pending is False and balance(wallet) == before
        customer = world["cust:r1"]
        customer.refresh_from_db()
        assert customer.package_id == world["pkg:A1"].pk
        assert LedgerTransaction.objects.filter(idempotency_key=f"sale:card:activate:{card.pk}").exists()


# ---------------------------------------------------------------- wrong-PIN limits

def test_wrong_pins_are_limited_per_customer(world):
    _, pairs = sold_batch(world, count=1)
    cust = world["cust:r1"]
    for i in range(cards.PIN_MAX_FAILURES):
        with pytest.raises(cards.CardRefused) as e:
            cards.redeem_card(customer=cust, pin="0000000000000000", actor=None, source=f"203.0.113.{i}")
        assert refusal(e) == "wrong_pin"
    with pytest.raises(cards.CardRateLimited) as limited:  # even the right PIN, from a fresh address
        cards.redeem_card(customer=cust, pin=pairs[0][1], actor=None, source="203.0.113.99")
    assert limited.value.scope == "customer" and limited.value.retry_after > 0
    assert RechargeCard.objects.get(serial=pairs[0][0]).status == CardStatus.SOLD
    # another customer is not affected
    cards.redeem_card(customer=world["cust:s1"], pin=pairs[0][1], actor=None, source="203.0.113.99")


def test_wrong_pins_are_limited_per_source(world):
    _, pairs = sold_batch(world, count=1)
    for i in range(cards.PIN_MAX_FAILURES):  # different customers, one address
        cust = world["cust:r1"] if i % 2 else world["cust:s1"]
        with pytest.raises(cards.CardRefused):
            cards.redeem_card(customer=cust, pin=f"12345678901234{i:02d}", actor=None, source="198.51.100.50")
    with pytest.raises(cards.CardRateLimited) as limited:  # r1 itself has only 2 failures
        cards.redeem_card(customer=world["cust:r1"], pin=pairs[0][1], actor=None, source="198.51.100.50")
    assert limited.value.scope == "source"
    # malformed input counts too (s1: 3 + 1 failures, still under the limit)
    with pytest.raises(cards.CardRefused):
        cards.redeem_card(customer=world["cust:s1"], pin="abc", actor=None, source="198.51.100.51")
    cards.redeem_card(customer=world["cust:s1"], pin=pairs[0][1], actor=None, source="198.51.100.51")


def test_package_card_refused_when_the_package_cannot_be_sold_to_the_customer(world):
    if importlib.util.find_spec("ispcore.billing.sales") is None:
        pytest.skip("billing.sales not installed")
    from ispcore.catalog.models import PriceListEntry

    batch = cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=1, package=world["pkg:A1"],
                                 validity_days=30)
    pin = pins_of(batch)[0][1]
    cards.sell_batch_to_distributor(batch, actor=world["u:r1"], distributor=world["node:d1"])
    PriceListEntry.objects.filter(node=world["node:s1"], package=world["pkg:A1"]).update(is_active=False)
    with pytest.raises(cards.CardRefused) as e:
        cards.redeem_card(customer=world["cust:s1"], pin=pin, actor=None)
    assert refusal(e) == "package_refused"
    assert RechargeCard.objects.get(batch=batch).status == CardStatus.SOLD
    assert not LedgerTransaction.objects.filter(kind="card_redeem").exists()
    result = cards.redeem_card(customer=world["cust:r1"], pin=pin, actor=world["u:c1"])
    assert result.activation is not None and result.activation.package_id == world["pkg:A1"].pk


def test_generate_cards_command_writes_the_download_once(world, tmp_path):
    from django.core.management import call_command

    call_command("generate_cards", issuer=world["node:r1"].pk, count=5, value="20", days=10, actor="r1",
                 out=str(tmp_path))
    batch = CardBatch.objects.exclude(memo="world").get()
    assert (tmp_path / f"cards-batch-{batch.pk}.zip").stat().st_size > 0
    assert batch.cards.count() == 5 and not CardBatchDownload.objects.filter(batch=batch).exists()
