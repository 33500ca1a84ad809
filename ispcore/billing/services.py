"""The only code that writes money.

`post_transaction` is the one way a balance changes: it validates the legs, locks the
wallets, refuses a posting that would break a wallet's floor, writes the transaction
and its entries and the new balances together, and is idempotent by key."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from ispcore.core import audit
from ispcore.core.bulk import bulk_set
from ispcore.core.models import AuditEvent
from ispcore.core.money import to_money

from .locks import assert_locked, lock_wallets
from .models import LedgerEntry, LedgerTransaction, Wallet


class LedgerError(Exception):
    """A posting that was refused; nothing was written."""


class UnbalancedTransaction(LedgerError):
    pass


class InsufficientFunds(LedgerError):
    def __init__(self, wallet: Wallet, needed: Decimal, available: Decimal):
        self.wallet, self.needed, self.available = wallet, needed, available
        super().__init__(f"wallet {wallet.pk} ({wallet.owner_label}) has {available} available, {needed} needed")


class IdempotencyConflict(LedgerError):
    """The key was already used for a different posting."""


def open_wallet(*, tenant, node=None, customer=None, system_code: str = "", credit_limit: Decimal | int | str = 0) -> Wallet:
    """Create (or return) the wallet of a node, a customer or a tenant system account."""
    unbounded = bool(system_code)
    defaults = {"credit_limit": to_money(credit_limit), "unbounded": unbounded, "currency": tenant.currency}
    if node is not None:
        wallet, _ = Wallet.objects.get_or_create(tenant=tenant, node=node, defaults=defaults)
    elif customer is not None:
        wallet, _ = Wallet.objects.get_or_create(tenant=tenant, customer=customer, defaults=defaults)
    else:
        wallet, _ = Wallet.objects.get_or_create(tenant=tenant, system_code=system_code, defaults=defaults)
    return wallet


def open_system_wallets(tenant) -> dict[str, Wallet]:
    return {code: open_wallet(tenant=tenant, system_code=code) for code in Wallet.SystemCode.values}


def system_wallet(tenant, code: str) -> Wallet:
    """The tenant's system account `code`, opened on first use (so an account added in a
    later release exists for tenants created before it)."""
    if code not in Wallet.SystemCode.values and code != "card_float":
        raise LookupError(f"unknown system account {code!r}")
    wallet = Wallet.objects.filter(tenant=tenant, system_code=code).first()
    return wallet if wallet is not None else open_wallet(tenant=tenant, system_code=code)


def set_credit_limit(wallet: Wallet, limit: Decimal | int | str, *, actor) -> Wallet:
    """Change a postpaid wallet's credit limit; refused if the balance would already be past it."""
    limit = to_money(limit)
    if limit < 0:
        raise LedgerError("a credit limit cannot be negative")
    with transaction.atomic():
        locked = lock_wallets([wallet.pk])[wallet.pk]
        if not locked.unbounded and locked.balance < -limit:
            raise LedgerError(f"the balance {locked.balance} is already below -{limit}")
        old = locked.credit_limit
        locked.credit_limit = limit
        locked.save(update_fields=["credit_limit", "updated_at"])
        audit.record("wallet.credit_limit", locked, actor=actor, old=str(old), new=str(limit))
    return locked


def _legs_match(txn: LedgerTransaction, legs: list[tuple[int, Decimal]]) -> bool:
    stored = sorted((e.wallet_id, e.amount) for e in txn.entries.all())
    return stored == sorted(legs)


@dataclass
class Posting:
    """One balanced transaction to post: (wallet, amount) legs, positive credits."""

    legs: Sequence[tuple[Wallet | int, Decimal | int | str]]
    kind: str
    idempotency_key: str
    memo: str = ""
    reference: str = ""
    must_cover: Sequence[Wallet | int] = ()
    norm: list[tuple[int, Decimal]] = field(default_factory=list)

    def normalise(self) -> None:
        if not self.idempotency_key:
            raise LedgerError("an idempotency key is required")
        self.norm = []
        for wallet, amount in self.legs:
            value = to_money(amount)
            if value == 0:
                raise LedgerError("a ledger entry cannot be zero")
            self.norm.append((wallet if isinstance(wallet, int) else wallet.pk, value))
        if len(self.norm) < 2:
            raise UnbalancedTransaction("a transaction needs at least two legs")
        total = sum((a for _, a in self.norm), Decimal("0"))
        if total != 0:
            raise UnbalancedTransaction(f"legs sum to {total}, not zero")


def post_transaction(
    *,
    legs: Sequence[tuple[Wallet | int, Decimal | int | str]],
    kind: str,
    idempotency_key: str,
    actor=None,
    memo: str = "",
    reference: str = "",
    must_cover: Sequence[Wallet | int] = (),
) -> LedgerTransaction:
    """Post a balanced transaction atomically and idempotently.

    `legs` are (wallet, amount) pairs: a positive amount credits the wallet, a
    negative one debits it, and they must sum to zero. Posting the same key again
    returns the first transaction (with `.replayed = True`) and writes nothing;
    the same key with different legs raises IdempotencyConflict. Wallets in `must_cover`
    must stay above their floor even if they are unbounded (a monthly customer may owe
    bills, but may not buy on credit)."""
    posting = Posting(legs=legs, kind=kind, idempotency_key=idempotency_key, memo=memo, reference=reference,
                      must_cover=must_cover)
    return post_transactions([posting], actor=actor)[0]


def post_transactions(postings: Sequence[Posting], *, actor=None) -> list[LedgerTransaction]:
    """Post many transactions in one database transaction, all or nothing, with the same
    guarantees as `post_transaction` for each: every wallet involved is locked once (in id
    order), keys already posted are returned as replays, floors are checked in order."""
    for posting in postings:
        posting.normalise()
    keys = [p.idempotency_key for p in postings]
    if len(set(keys)) != len(keys):
        raise IdempotencyConflict("the same idempotency key appears twice in one batch")
    with transaction.atomic():
        wallets = lock_wallets({w for p in postings for w, _ in p.norm})
        # Checked after the locks: a concurrent poster of the same key has committed by now.
        existing = {t.idempotency_key: t for t in LedgerTransaction.objects.filter(idempotency_key__in=keys)
                    .prefetch_related("entries")}
        balances = {wid: w.balance for wid, w in wallets.items()}
        fresh: list[Posting] = []
        for posting in postings:
            old = existing.get(posting.idempotency_key)
            if old is not None:
                if not _legs_match(old, posting.norm):
                    raise IdempotencyConflict(f"key {posting.idempotency_key!r} was used for a different posting")
                continue
            if len({wallets[w].tenant_id for w, _ in posting.norm}) != 1:
                raise LedgerError("a transaction cannot cross tenants")
            covering = {w if isinstance(w, int) else w.pk for w in posting.must_cover}
            after = dict(balances)
            for wid, amount in posting.norm:
                after[wid] += amount
            for wid, _ in posting.norm:
                w = wallets[wid]
                bounded = not w.unbounded or wid in covering
                if bounded and after[wid] < -w.credit_limit and after[wid] < balances[wid]:
                    raise InsufficientFunds(w, needed=balances[wid] - after[wid],
                                            available=balances[wid] + w.credit_limit)
            balances = after
            fresh.append(posting)
        actor_id = actor.pk if getattr(actor, "pk", None) else None
        try:
            with transaction.atomic():
                created = LedgerTransaction.objects.bulk_create([
                    LedgerTransaction(tenant_id=wallets[p.norm[0][0]].tenant_id, idempotency_key=p.idempotency_key,
                                      kind=p.kind, memo=p.memo[:255], reference=p.reference[:120], actor_id=actor_id)
                    for p in fresh
                ])
        except IntegrityError:
            raise IdempotencyConflict("a key of this batch is being posted concurrently with other legs") from None
        running = {wid: w.balance for wid, w in wallets.items()}
        entries = []
        for txn, posting in zip(created, fresh, strict=True):
            for wid, amount in posting.norm:
                running[wid] += amount
                entries.append(LedgerEntry(transaction=txn, wallet_id=wid, amount=amount, balance_after=running[wid]))
            txn.replayed = False
        LedgerEntry.objects.bulk_create(entries, batch_size=5000)
        changed = [w for wid, w in wallets.items() if w.balance != balances[wid]]
        now = timezone.now()
        for w in changed:
            assert_locked(w)
            w.balance, w.updated_at = balances[w.pk], now
        bulk_set(changed, ["balance", "updated_at"])
        AuditEvent.objects.bulk_create([
            AuditEvent(tenant_id=txn.tenant_id, actor_id=actor_id, action="ledger.post",
                       object_type="billing.ledgertransaction", object_id=str(txn.pk),
                       data={"kind": txn.kind, "legs": [[w, str(a)] for w, a in p.norm]})
            for txn, p in zip(created, fresh, strict=True)
        ], batch_size=5000)
    by_key = {t.idempotency_key: t for t in created}
    result = []
    for key in keys:
        if key in by_key:
            result.append(by_key[key])
        else:
            existing[key].replayed = True
            result.append(existing[key])
    return result


def ledger_differences(tenant_id: int | None = None) -> dict:
    """Compare every wallet's stored balance with the sum of its entries, and every
    transaction's entries with zero. Returns {'wallets': [...], 'transactions': [...]}."""
    wallets = Wallet.objects.all()
    entries = LedgerEntry.objects.all()
    if tenant_id is not None:
        wallets = wallets.filter(tenant_id=tenant_id)
        entries = entries.filter(wallet__tenant_id=tenant_id)
    sums = {row["wallet_id"]: row["total"] for row in entries.values("wallet_id").annotate(total=Sum("amount"))}
    wallet_diffs = []
    for wid, stored in wallets.values_list("id", "balance").iterator(chunk_size=5000):
        expected = sums.get(wid) or Decimal("0.00")
        if stored != expected:
            wallet_diffs.append({"wallet": wid, "stored": stored, "ledger": expected, "difference": stored - expected})
    unbalanced = [
        {"transaction": row["transaction_id"], "sum": row["total"]}
        for row in entries.values("transaction_id").annotate(total=Sum("amount")).exclude(total=0)
    ]
    return {"wallets": wallet_diffs, "transactions": unbalanced}


def repair_balances(wallet_ids: list[int], *, actor=None) -> int:
    """Set each wallet's balance to the sum of its entries, under lock; returns how many changed."""
    changed = 0
    with transaction.atomic():
        for w in lock_wallets(wallet_ids).values():
            expected = w.entries.aggregate(total=Sum("amount"))["total"] or Decimal("0.00")
            if w.balance != expected:
                audit.record("wallet.rebuild", w, actor=actor, old=str(w.balance), new=str(expected))
                w.balance = expected
                w.save(update_fields=["balance", "updated_at"])
                changed += 1
    return changed
