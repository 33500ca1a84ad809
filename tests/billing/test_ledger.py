"""The money core: balanced, idempotent, locked, immutable, and provably consistent."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from ispcore.accounts import services as accounts
from ispcore.accounts.models import User
from ispcore.accounts.roles import NodeKind, Role
from ispcore.billing.locks import UnlockedWriteError, lock_wallets
from ispcore.billing.models import LedgerEntry, LedgerTransaction, Wallet
from ispcore.billing.services import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    UnbalancedTransaction,
    ledger_differences,
    open_wallet,
    post_transaction,
    system_wallet,
)


@pytest.fixture
def isp(db):
    su = User.objects.create(username="root", role=Role.SUPER_ADMIN)
    tenant = accounts.create_tenant(actor=su, name="Ledger ISP", slug="ledger-isp")
    reseller = accounts.create_node(actor=su, parent=tenant.root_node, kind=NodeKind.RESELLER, name="R")
    postpaid = accounts.create_node(actor=su, parent=tenant.root_node, kind=NodeKind.RESELLER, name="P",
                                   billing_mode="postpaid", credit_limit=Decimal("500"))
    return {
        "su": su, "tenant": tenant, "adj": system_wallet(tenant, "adjustment"), "rev": system_wallet(tenant, "revenue"),
        "r": open_wallet(tenant=tenant, node=reseller), "p": open_wallet(tenant=tenant, node=postpaid),
    }


def topup(isp, wallet, amount, key):
    return post_transaction(legs=[(isp["adj"], -Decimal(amount)), (wallet, Decimal(amount))], kind="topup",
                            idempotency_key=key, actor=isp["su"])


def test_entries_balance_and_balances_follow(isp):
    txn = topup(isp, isp["r"], "150.50", "t1")
    assert sum(e.amount for e in txn.entries.all()) == Decimal("0")
    isp["r"].refresh_from_db()
    isp["adj"].refresh_from_db()
    assert isp["r"].balance == Decimal("150.50")
    assert isp["adj"].balance == Decimal("-150.50")
    entry = txn.entries.get(wallet=isp["r"])
    assert entry.balance_after == Decimal("150.50")


def test_unbalanced_zero_and_float_legs_are_refused(isp):
    with pytest.raises(UnbalancedTransaction):
        post_transaction(legs=[(isp["adj"], Decimal("-1")), (isp["r"], Decimal("2"))], kind="x", idempotency_key="u1")
    with pytest.raises(LedgerError):
        post_transaction(legs=[(isp["adj"], Decimal("0")), (isp["r"], Decimal("0"))], kind="x", idempotency_key="u2")
    with pytest.raises(TypeError):
        post_transaction(legs=[(isp["adj"], -1.5), (isp["r"], 1.5)], kind="x", idempotency_key="u3")
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="u").exists()


def test_repost_with_same_key_returns_first_and_writes_nothing(isp):
    first = topup(isp, isp["r"], "100", "same-key")
    count = LedgerEntry.objects.count()
    again = topup(isp, isp["r"], "100", "same-key")
    assert again.pk == first.pk and again.replayed is True
    assert LedgerEntry.objects.count() == count
    isp["r"].refresh_from_db()
    assert isp["r"].balance == Decimal("100.00")
    with pytest.raises(IdempotencyConflict):
        topup(isp, isp["r"], "999", "same-key")


def test_prepaid_wallet_cannot_go_negative(isp):
    topup(isp, isp["r"], "10", "seed")
    with pytest.raises(InsufficientFunds) as exc:
        post_transaction(legs=[(isp["r"], Decimal("-10.01")), (isp["rev"], Decimal("10.01"))], kind="sale",
                         idempotency_key="over")
    assert exc.value.available == Decimal("10.00")
    isp["r"].refresh_from_db()
    assert isp["r"].balance == Decimal("10.00")
    assert not LedgerTransaction.objects.filter(idempotency_key="over").exists()


def test_postpaid_wallet_stops_at_its_credit_limit(isp):
    post_transaction(legs=[(isp["p"], Decimal("-500")), (isp["rev"], Decimal("500"))], kind="sale", idempotency_key="p1")
    with pytest.raises(InsufficientFunds):
        post_transaction(legs=[(isp["p"], Decimal("-0.01")), (isp["rev"], Decimal("0.01"))], kind="sale",
                         idempotency_key="p2")
    isp["p"].refresh_from_db()
    assert isp["p"].balance == Decimal("-500.00")


def test_database_constraint_backs_the_floor(isp):
    """Even a raw UPDATE that skips the service cannot push a prepaid wallet below zero."""
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE billing_wallet SET balance = -1 WHERE id = %s", [isp["r"].pk])


def test_ledger_rows_are_immutable_in_the_model_and_the_database(isp):
    txn = topup(isp, isp["r"], "5", "imm")
    entry = txn.entries.first()
    entry.amount = Decimal("6")
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()
    for sql in ("UPDATE billing_ledgerentry SET amount = 7 WHERE id = %s", "DELETE FROM billing_ledgerentry WHERE id = %s"):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [entry.pk])


def test_a_balance_write_without_the_row_lock_fails(isp):
    wallet = Wallet.objects.get(pk=isp["r"].pk)
    wallet.balance = Decimal("1000")
    with pytest.raises(UnlockedWriteError), transaction.atomic():
        wallet.save()
    with transaction.atomic():
        locked = lock_wallets([wallet.pk])[wallet.pk]
        locked.credit_limit = Decimal("0")
        locked.save()  # with the lock it is allowed


def test_lock_is_forgotten_when_its_transaction_rolls_back(isp):
    wallet_id = isp["r"].pk
    with transaction.atomic():
        try:
            with transaction.atomic():
                lock_wallets([wallet_id])
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        stale = Wallet.objects.get(pk=wallet_id)
        with pytest.raises(UnlockedWriteError):
            stale.save()


def test_transactions_cannot_cross_tenants(isp):
    su = isp["su"]
    other = accounts.create_tenant(actor=su, name="Other", slug="other")
    with pytest.raises(LedgerError):
        post_transaction(legs=[(system_wallet(other, "adjustment"), Decimal("-1")), (isp["r"], Decimal("1"))],
                         kind="x", idempotency_key="cross")


def test_rebuild_balances_check_finds_a_corrupted_balance_and_repairs_it(isp, capsys):
    topup(isp, isp["r"], "42", "rb")
    call_command("rebuild_balances", "--check")
    with connection.cursor() as cur:
        cur.execute("UPDATE billing_wallet SET balance = 41 WHERE id = %s", [isp["r"].pk])
    with pytest.raises(CommandError, match="1 wallet balance"):
        call_command("rebuild_balances", "--check")
    assert f"wallet {isp['r'].pk}: stored 41.00 ledger 42.00" in capsys.readouterr().out
    call_command("rebuild_balances")
    isp["r"].refresh_from_db()
    assert isp["r"].balance == Decimal("42.00")
    call_command("rebuild_balances", "--check")


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_spending_one_prepaid_wallet_never_overdraw_or_lose_entries():
    su = User.objects.create(username="root", role=Role.SUPER_ADMIN)
    tenant = accounts.create_tenant(actor=su, name="Race ISP", slug="race")
    node = accounts.create_node(actor=su, parent=tenant.root_node, kind=NodeKind.RESELLER, name="R")
    wallet = open_wallet(tenant=tenant, node=node)
    adj, rev = system_wallet(tenant, "adjustment"), system_wallet(tenant, "revenue")
    post_transaction(legs=[(adj, Decimal("-100")), (wallet, Decimal("100"))], kind="topup", idempotency_key="seed")

    results: list[str] = []
    barrier = threading.Barrier(20)

    def spend(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                # Each thread also re-posts one key another thread uses: idempotency under contention.
                key = f"sale-{worker}-{i}" if i < 4 else f"shared-{worker % 10}"
                try:
                    txn = post_transaction(legs=[(wallet, Decimal("-3")), (rev, Decimal("3"))], kind="sale",
                                           idempotency_key=key)
                    results.append("replay" if txn.replayed else "ok")
                except InsufficientFunds:
                    results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wallet.refresh_from_db()
    entries = LedgerEntry.objects.filter(wallet=wallet)
    sold = entries.filter(amount__lt=0).count()
    assert len(results) == 100
    assert results.count("ok") == sold == 33  # 100 / 3, never more
    assert wallet.balance == Decimal("1.00")
    assert wallet.balance >= 0
    assert sum(e.amount for e in entries) == wallet.balance
    assert not ledger_differences()["wallets"]
