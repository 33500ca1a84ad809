"""SMS credit: the tenant's SMS balance as ledger wallets, moved only by
``billing.services.post_transactions`` (row locks, idempotency keys).

Four tenant system accounts (``Wallet.system_code``):

* ``sms_credit``   what the tenant can still spend; *bounded* (credit limit 0): the
                   database refuses a negative balance, so no send can overdraw it;
* ``sms_held``     cost held for messages not yet settled; bounded too, so releasing
                   more than was held fails;
* ``sms_spent``    cost of messages the provider accepted (unbounded, grows negative
                   from the tenant's side as in every system account);
* ``sms_purchased`` the other side of credit sold to the tenant by the super admin.

Lifecycle of one message's cost ``c`` (amounts exact, two places)::

    hold     sms_credit -c,  sms_held +c      before anything is sent (refused if short)
    charge   sms_held   -c,  sms_spent +c     when the provider accepted it
    refund   sms_held   -c,  sms_credit +c    rejected / failed / blocked / cancelled, before charge
             sms_spent  -c,  sms_credit +c    undelivered / expired / rejected by DLR, after charge

Every posting's key says what it settles; the message rows carry ``charged_at`` /
``refunded_at`` updated in the same transaction, with a state check, so each message is
charged at most once and refunded at most once.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ispcore.billing.models import Wallet
from ispcore.billing.services import InsufficientFunds, Posting, post_transaction, post_transactions
from ispcore.core import audit
from ispcore.core.money import to_money

CREDIT, HELD, SPENT, PURCHASED = "sms_credit", "sms_held", "sms_spent", "sms_purchased"
_BOUNDED = {CREDIT, HELD}


class InsufficientSmsCredit(ValidationError):
    """The send costs more than the tenant's SMS balance; nothing was held or sent."""

    def __init__(self, needed: Decimal, available: Decimal):
        self.needed, self.available = needed, available
        super().__init__(_("This send costs %(needed)s but the SMS balance is %(available)s.")
                         % {"needed": needed, "available": available}, code="insufficient_sms_credit")


def sms_wallet(tenant_id: int, code: str) -> Wallet:
    """The tenant's SMS wallet ``code``, opened on first use (bounded for credit/held)."""
    wallet = Wallet.objects.filter(tenant_id=tenant_id, system_code=code).first()
    if wallet is not None:
        return wallet
    from ispcore.accounts.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    try:
        with transaction.atomic():
            return Wallet.objects.create(tenant=tenant, system_code=code, unbounded=code not in _BOUNDED,
                                         currency=tenant.currency)
    except IntegrityError:  # opened concurrently
        return Wallet.objects.get(tenant_id=tenant_id, system_code=code)


def wallets(tenant_id: int) -> dict[str, Wallet]:
    return {code: sms_wallet(tenant_id, code) for code in (CREDIT, HELD, SPENT, PURCHASED)}


def balance(tenant_id: int) -> Decimal:
    """The SMS balance the tenant can spend (held amounts excluded)."""
    return Wallet.objects.filter(tenant_id=tenant_id, system_code=CREDIT).values_list("balance", flat=True).first() \
        or Decimal("0.00")


def held(tenant_id: int) -> Decimal:
    return Wallet.objects.filter(tenant_id=tenant_id, system_code=HELD).values_list("balance", flat=True).first() \
        or Decimal("0.00")


def sell_credit(tenant, amount: Decimal | int | str, *, actor, idempotency_key: str, memo: str = ""):
    """The super admin sells SMS credit to a tenant (or a tenant's recharge is confirmed):
    one posting ``sms_purchased -> sms_credit``. Idempotent by key."""
    value = to_money(amount)
    if value <= 0:
        raise ValidationError({"amount": _("The amount must be positive.")})
    w = wallets(tenant.pk)
    with transaction.atomic():
        txn = post_transaction(legs=[(w[PURCHASED], -value), (w[CREDIT], value)], kind="sms.credit",
                               idempotency_key=f"sms:credit:{idempotency_key}", actor=actor,
                               memo=memo or "SMS credit", reference=f"tenant:{tenant.pk}")
        if not getattr(txn, "replayed", False):
            audit.record("sms.credit_sold", tenant, actor=actor, tenant_id=tenant.pk, amount=str(value))
    return txn


def hold(tenant_id: int, amount: Decimal, *, key: str, memo: str = "", actor=None):
    """Move ``amount`` from the spendable balance to held; InsufficientSmsCredit if short.
    Call inside the transaction that creates the messages it pays for."""
    amount = to_money(amount)
    if amount == 0:
        return None
    w = wallets(tenant_id)
    try:
        return post_transaction(legs=[(w[CREDIT], -amount), (w[HELD], amount)], kind="sms.hold",
                                idempotency_key=f"sms:hold:{key}", actor=actor, memo=memo)
    except InsufficientFunds as exc:
        raise InsufficientSmsCredit(amount, exc.available) from None


def batch_key(prefix: str, message_ids: Iterable[int]) -> str:
    """A deterministic idempotency key for settling exactly this set of messages."""
    ids = sorted(message_ids)
    digest = hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:20]
    return f"sms:{prefix}:{ids[0]}:{len(ids)}:{digest}"


def settle(tenant_id: int, *, charge: Sequence[tuple[int, Decimal]] = (),
           refund_held: Sequence[tuple[int, Decimal]] = (), refund_spent: Sequence[tuple[int, Decimal]] = ()) -> None:
    """Post the charges and refunds for (message id, cost) pairs in one ledger call.

    Must run inside the transaction that moves the messages' state (and sets
    ``charged_at`` / ``refunded_at`` with a state check): the pairs are exactly the
    messages that transition now, so the deterministic keys never repeat."""
    w = wallets(tenant_id)
    postings = []
    for prefix, pairs, src, dst in (("charge", charge, HELD, SPENT), ("refund", refund_held, HELD, CREDIT),
                                    ("refund-spent", refund_spent, SPENT, CREDIT)):
        total = sum((to_money(c) for _, c in pairs), Decimal("0.00"))
        if total == 0:
            continue
        postings.append(Posting(legs=[(w[src], -total), (w[dst], total)], kind=f"sms.{prefix}",
                                idempotency_key=batch_key(prefix, [m for m, _ in pairs]),
                                memo=f"{len(pairs)} SMS"))
    if postings:
        post_transactions(postings)
