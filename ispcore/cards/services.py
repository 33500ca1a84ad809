"""The only writes of recharge cards: generate, issue, sell, redeem, expire, void, download.

Each function takes the acting user explicitly, runs one transaction, records an audit
event, and moves money only through ``billing.services.post_transaction`` with a key named
after the card or batch (see the package docstring for the legs). Refusals raise
``CardRefused`` (a Django ValidationError naming the field, with a ``reason`` code) or
``CardRateLimited``; nothing is written when they are raised.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ispcore.accounts.models import AccountNode
from ispcore.accounts.roles import NodeKind, Role
from ispcore.billing.models import LedgerTransaction, Wallet
from ispcore.billing.services import open_wallet, post_transaction
from ispcore.core import audit, crypto
from ispcore.core.money import to_money

from .models import CardBatch, CardBatchDownload, CardStatus, RechargeCard
from .pins import DEFAULT_PIN_LENGTH, MIN_PIN_LENGTH, hash_pin, new_pins, normalize_pin, pin_key

CARD_FLOAT = "card_float"
MAX_BATCH_SIZE = 200_000
ISSUER_KINDS = {NodeKind.ISP, NodeKind.RESELLER, NodeKind.SUB_RESELLER}
SELLER_ROLES = {Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER}
# Wrong-PIN limits: this many failures within the window refuse further attempts.
PIN_MAX_FAILURES = int(getattr(settings, "CARD_PIN_MAX_FAILURES", 5))
PIN_FAILURE_WINDOW = int(getattr(settings, "CARD_PIN_FAILURE_WINDOW_SECONDS", 15 * 60))


class CardRefused(ValidationError):
    """A card operation that was refused; `reason` is a stable code for clients and tests."""

    def __init__(self, field: str, message: str, reason: str):
        self.reason = reason
        super().__init__({field: [ValidationError(message, code=reason)]})


class CardRateLimited(Exception):
    """Too many wrong PINs from this customer or this source; try again after `retry_after` seconds."""

    def __init__(self, scope: str, retry_after: int):
        self.scope, self.retry_after = scope, retry_after
        super().__init__(f"too many wrong PINs from this {scope}; try again in {max(retry_after, 1) // 60 + 1} minutes")


@dataclass
class Redemption:
    """What a redemption did: the card (now used), the ledger credit, the activation if any."""

    card: RechargeCard
    amount: Decimal
    transaction: LedgerTransaction
    activation: object | None = None
    activation_pending: bool = False


# ---------------------------------------------------------------- helpers

def card_float_wallet(tenant) -> Wallet:
    """The tenant's unbounded liability account for sold, unredeemed cards (created on first use)."""
    return open_wallet(tenant=tenant, system_code=CARD_FLOAT)


def issuer_wallet(issuer: AccountNode) -> Wallet:
    """Where the issuer's side of a sale lands: its node wallet, or for the ISP root the revenue account."""
    if issuer.parent_id is None:
        return open_wallet(tenant=issuer.tenant, system_code=Wallet.SystemCode.REVENUE)
    return open_wallet(tenant=issuer.tenant, node=issuer)


def _check_actor(actor, node: AccountNode) -> None:
    """The actor may manage cards of `node`: the super admin, a task (None), the tenant's
    admin, or a reseller/sub-reseller whose subtree holds the node."""
    if actor is None or getattr(actor, "role", None) == Role.SUPER_ADMIN:
        return
    if actor.tenant_id != node.tenant_id or actor.role not in SELLER_ROLES:
        raise CardRefused("issuer", "You may not manage this node's recharge cards.", "forbidden")
    if actor.role == Role.ADMIN:
        return
    if actor.node is None or not node.path.startswith(actor.node.path):
        raise CardRefused("issuer", "You may not manage this node's recharge cards.", "forbidden")


def _lock_batch(batch: CardBatch) -> CardBatch:
    return CardBatch.objects.select_for_update(of=("self",)).select_related("issuer", "tenant", "package").get(pk=batch.pk)


def _set_cards(batch: CardBatch, from_statuses: list[str], to_status: str, **extra) -> int:
    return RechargeCard.objects.filter(batch=batch, status__in=from_statuses).update(status=to_status, **extra)


def _release_float(batch: CardBatch, n: int, *, key: str, kind: str, actor, memo: str):
    """Return the liability of `n` sold cards of `batch` to the issuer that funded it."""
    if n <= 0:
        return None
    amount = batch.face_value * n
    return post_transaction(
        legs=[(card_float_wallet(batch.tenant), -amount), (issuer_wallet(batch.issuer), amount)],
        kind=kind, idempotency_key=key, actor=actor, memo=memo, reference=f"card-batch:{batch.pk}",
    )


def face_value_for(issuer: AccountNode, package) -> Decimal:
    """A package card is worth the package's customer price at the issuer: the ISP's list
    price at the root, the issuer's price-list `customer_price` below it."""
    if package.tenant_id != issuer.tenant_id or not package.is_active:
        raise CardRefused("package", "Choose an active package of this ISP.", "bad_package")
    if issuer.parent_id is None:
        return to_money(package.price)
    entry = package.price_entries.filter(node=issuer, is_active=True).first()
    if entry is None:
        raise CardRefused("package", "The issuer has no active price for this package.", "bad_package")
    return to_money(entry.customer_price)


# ---------------------------------------------------------------- generation

def generate_batch(
    *,
    actor,
    issuer: AccountNode,
    count: int,
    face_value: Decimal | int | str | None = None,
    package=None,
    valid_until: datetime | None = None,
    validity_days: int | None = None,
    pin_length: int = DEFAULT_PIN_LENGTH,
    memo: str = "",
) -> CardBatch:
    """Generate `count` unissued cards: a value card of `face_value` or a `package` card.

    Guarantees: every PIN comes from ``secrets``, is distinct within the tenant (unique
    index, regenerated on the rare clash) and is stored only as its keyed hash; the clear
    PINs are kept only encrypted in the batch's one-time download. No money moves."""
    if issuer.kind not in ISSUER_KINDS or not issuer.is_active:
        raise CardRefused("issuer", "Cards are generated by the ISP, a reseller or a sub-reseller.", "bad_issuer")
    _check_actor(actor, issuer)
    if not isinstance(count, int) or not 1 <= count <= MAX_BATCH_SIZE:
        raise CardRefused("count", f"Generate between 1 and {MAX_BATCH_SIZE} cards.", "bad_count")
    if not MIN_PIN_LENGTH <= pin_length <= 20:
        raise CardRefused("pin_length", f"A PIN has {MIN_PIN_LENGTH} to 20 digits.", "bad_pin_length")
    if package is not None:
        if face_value is not None:
            raise CardRefused("face_value", "A package card takes its value from the package.", "bad_value")
        kind, value = CardBatch.Kind.PACKAGE, face_value_for(issuer, package)
    else:
        if face_value is None:
            raise CardRefused("face_value", "Give a value or a package.", "bad_value")
        kind, value = CardBatch.Kind.VALUE, to_money(face_value)
    if value <= 0:
        raise CardRefused("face_value", "A card must be worth more than zero.", "bad_value")
    now = timezone.now()
    if valid_until is None:
        if not validity_days or validity_days < 1:
            raise CardRefused("valid_until", "Give the validity (an end date or a number of days).", "bad_validity")
        valid_until = now + timedelta(days=validity_days)
    if timezone.is_naive(valid_until):
        raise CardRefused("valid_until", "The end of validity needs a time zone.", "bad_validity")
    if valid_until <= now:
        raise CardRefused("valid_until", "The end of validity must be in the future.", "bad_validity")

    for attempt in range(3):
        try:
            with transaction.atomic():
                batch = CardBatch.objects.create(
                    tenant_id=issuer.tenant_id, issuer=issuer, kind=kind, package=package, face_value=value,
                    count=count, valid_until=valid_until, memo=memo[:255],
                    created_by=actor if getattr(actor, "pk", None) else None,
                )
                pins = new_pins(count, pin_length)
                serials = [f"{batch.pk:06d}{i:06d}" for i in range(1, count + 1)]
                _insert_cards(batch, serials, pins)
                plain = "".join(f"{s},{p}\n" for s, p in zip(serials, pins, strict=True))
                CardBatchDownload.objects.create(batch=batch, token=crypto.encrypt(plain))
                audit.record("card_batch.generate", batch, actor=actor, count=count, kind=kind, face_value=str(value))
                return batch
        except IntegrityError:
            # Only a PIN clash with an earlier batch can get here (serials are built from the new id).
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _insert_cards(batch: CardBatch, serials: list[str], pins: list[str]) -> None:
    key = pin_key()
    tenant_id = batch.tenant_id
    rows = [(tenant_id, batch.pk, s, hash_pin(tenant_id, p, key=key), CardStatus.UNISSUED)
            for s, p in zip(serials, pins, strict=True)]
    if connection.vendor == "postgresql":
        table = RechargeCard._meta.db_table
        with connection.cursor() as cur, cur.copy(
            f"COPY {table} (tenant_id, batch_id, serial, pin_hash, status) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        return
    RechargeCard.objects.bulk_create(
        [RechargeCard(tenant_id=t, batch_id=b, serial=s, pin_hash=h, status=st) for t, b, s, h, st in rows],
        batch_size=2000,
    )


# ---------------------------------------------------------------- issue and sale

def _check_distributor(batch: CardBatch, distributor: AccountNode) -> None:
    if distributor.kind != NodeKind.CARD_DISTRIBUTOR or not distributor.is_active:
        raise CardRefused("distributor", "Choose an active card distributor.", "bad_distributor")
    if distributor.parent_id != batch.issuer_id:
        raise CardRefused("distributor", "The distributor must be a child of the batch's issuer.", "bad_distributor")


@transaction.atomic
def issue_batch(batch: CardBatch, *, distributor: AccountNode, actor) -> CardBatch:
    """Hand an unissued batch to one of the issuer's card distributors (unissued -> issued). No money moves."""
    batch = _lock_batch(batch)
    _check_actor(actor, batch.issuer)
    if batch.status != CardStatus.UNISSUED:
        raise CardRefused("status", f"Only an unissued batch can be issued; this one is {batch.status}.", "bad_state")
    _check_distributor(batch, distributor)
    batch.distributor = distributor
    batch.status = CardStatus.ISSUED
    batch.issued_at = timezone.now()
    batch.save(update_fields=["distributor", "status", "issued_at"])
    _set_cards(batch, [CardStatus.UNISSUED], CardStatus.ISSUED)
    audit.record("card_batch.issue", batch, actor=actor, distributor=distributor.pk)
    return batch


@transaction.atomic
def sell_batch_to_distributor(
    batch: CardBatch,
    *,
    actor,
    distributor: AccountNode | None = None,
    commission_percent: Decimal | int | str = 0,
) -> CardBatch:
    """Sell the batch's unused cards to its distributor (issued -> sold; an unissued batch
    is issued to `distributor` first).

    With F = face value of the cards sold and c = F x commission_percent / 100 (rounded to
    the cent) it posts ``{distributor: -(F - c), issuer: -c, card_float: +F}`` under key
    ``card:sell:<batch id>``; refused with InsufficientFunds if the distributor (or, for
    the commission, a prepaid reseller issuer) cannot pay. A batch is sold once."""
    batch = _lock_batch(batch)
    _check_actor(actor, batch.issuer)
    if batch.status == CardStatus.UNISSUED:
        if distributor is None:
            raise CardRefused("distributor", "Name the distributor to sell to.", "bad_distributor")
        _check_distributor(batch, distributor)
        batch.distributor = distributor
        batch.issued_at = timezone.now()
        _set_cards(batch, [CardStatus.UNISSUED], CardStatus.ISSUED)
    elif batch.status == CardStatus.ISSUED:
        if distributor is not None and distributor.pk != batch.distributor_id:
            raise CardRefused("distributor", "This batch was issued to another distributor.", "bad_distributor")
    else:
        raise CardRefused("status", f"Only an unissued or issued batch can be sold; this one is {batch.status}.",
                          "bad_state")
    if batch.valid_until <= timezone.now():
        raise CardRefused("valid_until", "This batch has expired.", "expired")
    pct = to_money(commission_percent)
    if not Decimal("0") <= pct < Decimal("100"):
        raise CardRefused("commission_percent", "The commission is at least 0% and below 100%.", "bad_commission")
    n = RechargeCard.objects.filter(batch=batch, status=CardStatus.ISSUED).count()
    if n == 0:
        raise CardRefused("status", "This batch has no card left to sell.", "bad_state")
    total = batch.face_value * n
    commission = to_money(total * pct / 100)
    price = total - commission
    distributor_wallet = open_wallet(tenant=batch.tenant, node=batch.distributor)
    legs = [(distributor_wallet, -price), (card_float_wallet(batch.tenant), total)]
    if commission:
        legs.append((issuer_wallet(batch.issuer), -commission))
    post_transaction(legs=legs, kind="card_sale", idempotency_key=f"card:sell:{batch.pk}", actor=actor,
                     memo=f"{n} recharge cards of batch #{batch.pk}", reference=f"card-batch:{batch.pk}",
                     must_cover=[distributor_wallet])
    _set_cards(batch, [CardStatus.ISSUED], CardStatus.SOLD)
    batch.status = CardStatus.SOLD
    batch.sold_at = timezone.now()
    batch.sold_count, batch.commission, batch.sale_price = n, commission, price
    batch.save(update_fields=["distributor", "issued_at", "status", "sold_at", "sold_count", "commission", "sale_price"])
    audit.record("card_batch.sell", batch, actor=actor, distributor=batch.distributor_id, cards=n, face_total=str(total),
                 commission=str(commission), price=str(price))
    return batch


# ---------------------------------------------------------------- redemption

def _limit_keys(customer, source: str | None) -> list[tuple[str, str]]:
    keys = [("customer", f"cards:pinfail:customer:{customer.pk}")]
    if source:
        keys.append(("source", f"cards:pinfail:source:{source}"))
    return keys


def _reserve_attempt(customer, source: str | None) -> list[str]:
    """Count this attempt against the customer and the source before looking the PIN up,
    so a burst of simultaneous guesses cannot slip past the limit; refused with
    CardRateLimited once the wrong-PIN budget is used. Attempts that turn out not to be
    wrong PINs are given back (``_give_back``)."""
    taken: list[str] = []
    for scope, key in _limit_keys(customer, source):
        cache.add(key, 0, timeout=PIN_FAILURE_WINDOW)
        try:
            n = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=PIN_FAILURE_WINDOW)
            n = 1
        taken.append(key)
        if n > PIN_MAX_FAILURES:
            _give_back(taken)
            raise CardRateLimited(scope, PIN_FAILURE_WINDOW)
    return taken


def _give_back(keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(ValueError):  # the window ended meanwhile
            cache.decr(key)


def redeem_card(*, customer, pin: str, actor, source: str | None = None) -> Redemption:
    """Redeem the card with this PIN for `customer`.

    Guarantees: exactly once per card whatever the concurrency: the conditional UPDATE
    ``status sold -> used`` (row lock; losers see 0 rows), the ledger posting
    ``{card_float: -V, customer: +V}`` with key ``card:redeem:<card id>`` and, for a package
    card, the activation (key ``card:activate:<card id>``) commit together or not at all.
    Wrong PINs count against the customer and the `source` (client address): after
    CARD_PIN_MAX_FAILURES (5) within 15 minutes every attempt is refused with
    CardRateLimited, even with a right PIN. Cards outside the issuer's subtree, unsold,
    used, void or past validity are refused (CardRefused with reason
    not_sold/used/void/expired/not_here)."""
    attempt = _reserve_attempt(customer, source)
    wrong_pin = False
    try:
        pin = normalize_pin(pin)
        card = None
        if pin.isdigit() and MIN_PIN_LENGTH <= len(pin) <= 20:
            card = (RechargeCard.objects.select_related("batch", "batch__issuer", "batch__package", "tenant")
                    .filter(tenant_id=customer.tenant_id, pin_hash=hash_pin(customer.tenant_id, pin)).first())
        if card is None:
            wrong_pin = True
            raise CardRefused("pin", "This PIN is not valid.", "wrong_pin")
        return _redeem(card, customer, actor=actor, source=source)
    finally:
        if not wrong_pin:
            _give_back(attempt)


def _redeem(card: RechargeCard, customer, *, actor, source: str | None) -> Redemption:
    _check_redeemable(card, customer)
    batch = card.batch
    value = batch.face_value
    customer_wallet = open_wallet(tenant=customer.tenant, customer=customer)
    float_wallet = card_float_wallet(card.tenant)
    now = timezone.now()
    with transaction.atomic():
        won = RechargeCard.objects.filter(pk=card.pk, status=CardStatus.SOLD).update(
            status=CardStatus.USED, used_by=customer, used_at=now)
        if won != 1:
            card.refresh_from_db(fields=["status"])
            _check_redeemable(card, customer)
            raise CardRefused("pin", "This card has already been used.", "used")
        txn = post_transaction(
            legs=[(float_wallet, -value), (customer_wallet, value)], kind="card_redeem",
            idempotency_key=f"card:redeem:{card.pk}", actor=actor,
            memo=f"recharge card {card.serial}", reference=f"card:{card.serial}",
        )
        activation, pending = None, False
        if batch.kind == CardBatch.Kind.PACKAGE:
            activation, pending = _activate_package(card, customer, actor)
        card.status, card.used_by, card.used_at = CardStatus.USED, customer, now
        audit.record("card.redeem", card, actor=actor, customer=customer.pk, amount=str(value), source=source or "",
                     activation_pending=pending)
        audit.emit("card.redeemed", tenant_id=customer.tenant_id, customer_id=customer.pk, amount=str(value),
                   serial=card.serial)
    return Redemption(card=card, amount=value, transaction=txn, activation=activation, activation_pending=pending)


def _check_redeemable(card: RechargeCard, customer) -> None:
    batch = card.batch
    if card.status == CardStatus.USED:
        raise CardRefused("pin", "This card has already been used.", "used")
    if card.status == CardStatus.VOID:
        raise CardRefused("pin", "This card has been cancelled.", "void")
    if card.status == CardStatus.EXPIRED or batch.valid_until <= timezone.now():
        raise CardRefused("pin", "This card has expired.", "expired")
    if card.status != CardStatus.SOLD:
        raise CardRefused("pin", "This card has not been sold yet.", "not_sold")
    if not customer.node.path.startswith(batch.issuer.path):
        raise CardRefused("pin", "This card is not valid for your account.", "not_here")
    if batch.kind == CardBatch.Kind.PACKAGE and not batch.package.serves(customer.customer_type):
        raise CardRefused("pin", "This card's package is not available for your connection type.", "not_here")


def _activate_package(card: RechargeCard, customer, actor):
    """Buy the card's package from the customer wallet the card just credited, at the
    customer's own price (``billing.sales.purchase_package``): if that price is below the
    card's face value the rest stays on the wallet; if the sale is refused (price above
    the credit plus balance, package not sold at the customer's node, customer suspended)
    the whole redemption is refused. Returns (activation, pending): pending is True only
    if the package-sale service is not installed."""
    try:
        from ispcore.billing.sales import purchase_package
    except ImportError:
        return None, True
    from django.core.exceptions import PermissionDenied

    from ispcore.billing.services import LedgerError

    try:
        activation = purchase_package(customer, card.batch.package, actor=actor, payer="customer",
                                      idempotency_key=f"card:activate:{card.pk}")
    except (LedgerError, PermissionDenied, ValidationError) as exc:
        # The whole redemption rolls back: the card stays sold and nothing is credited.
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise CardRefused("pin", f"This card's package cannot be activated for you: {message}",
                          "package_refused") from None
    return activation, False


# ---------------------------------------------------------------- expiry and void

@transaction.atomic
def expire_batch(batch: CardBatch, *, actor=None, now: datetime | None = None) -> int:
    """Expire the unredeemed cards of a batch past its validity; returns how many expired.

    Sold cards' liability goes back to the issuer in one posting, key
    ``card:expire:<batch id>``. Idempotent: a second run finds nothing to expire."""
    now = now or timezone.now()
    batch = _lock_batch(batch)
    if batch.valid_until > now:
        return 0
    sold = _set_cards(batch, [CardStatus.SOLD], CardStatus.EXPIRED)
    unsold = _set_cards(batch, [CardStatus.UNISSUED, CardStatus.ISSUED], CardStatus.EXPIRED)
    _release_float(batch, sold, key=f"card:expire:{batch.pk}", kind="card_expiry", actor=actor,
                   memo=f"{sold} recharge cards of batch #{batch.pk} expired unused")
    if batch.status in (CardStatus.UNISSUED, CardStatus.ISSUED, CardStatus.SOLD):
        batch.status = CardStatus.EXPIRED
        batch.save(update_fields=["status"])
    if sold or unsold:
        audit.record("card_batch.expire", batch, actor=actor, sold=sold, unsold=unsold)
    return sold + unsold


def expire_due_batches(*, now: datetime | None = None) -> int:
    """Expire every batch past its validity that still has live cards; returns cards expired."""
    now = now or timezone.now()
    ids = CardBatch.objects.filter(
        valid_until__lte=now, status__in=[CardStatus.UNISSUED, CardStatus.ISSUED, CardStatus.SOLD]
    ).values_list("pk", flat=True)
    return sum(expire_batch(CardBatch(pk=pk), now=now) for pk in list(ids))


@transaction.atomic
def void_card(card: RechargeCard, *, actor, reason: str = "") -> RechargeCard:
    """Cancel one card that is not used, expired or void. Voiding a sold card returns its
    value from card_float to the issuer (key ``card:void:<card id>``); compensating the
    distributor is the issuer's business, outside this system."""
    card = RechargeCard.objects.select_for_update(of=("self",)).select_related("batch", "batch__issuer", "batch__tenant").get(
        pk=card.pk)
    _check_actor(actor, card.batch.issuer)
    if card.status not in (CardStatus.UNISSUED, CardStatus.ISSUED, CardStatus.SOLD):
        raise CardRefused("status", f"A {card.status} card cannot be voided.", "bad_state")
    was_sold = card.status == CardStatus.SOLD
    card.status, card.voided_at = CardStatus.VOID, timezone.now()
    card.save(update_fields=["status", "voided_at"])
    if was_sold:
        _release_float(card.batch, 1, key=f"card:void:{card.pk}", kind="card_void", actor=actor,
                       memo=f"recharge card {card.serial} voided")
    audit.record("card.void", card, actor=actor, was_sold=was_sold, reason=reason[:200])
    return card


@transaction.atomic
def void_batch(batch: CardBatch, *, actor, reason: str = "") -> CardBatch:
    """Cancel every live card of a batch (unissued, issued or sold). Sold cards' value goes
    back from card_float to the issuer (key ``card:void-batch:<batch id>``)."""
    batch = _lock_batch(batch)
    _check_actor(actor, batch.issuer)
    if batch.status not in (CardStatus.UNISSUED, CardStatus.ISSUED, CardStatus.SOLD):
        raise CardRefused("status", f"A {batch.status} batch cannot be voided.", "bad_state")
    now = timezone.now()
    sold = _set_cards(batch, [CardStatus.SOLD], CardStatus.VOID, voided_at=now)
    unsold = _set_cards(batch, [CardStatus.UNISSUED, CardStatus.ISSUED], CardStatus.VOID, voided_at=now)
    _release_float(batch, sold, key=f"card:void-batch:{batch.pk}", kind="card_void", actor=actor,
                   memo=f"{sold} recharge cards of batch #{batch.pk} voided")
    batch.status = CardStatus.VOID
    batch.save(update_fields=["status"])
    audit.record("card_batch.void", batch, actor=actor, sold=sold, unsold=unsold, reason=reason[:200])
    return batch


# ---------------------------------------------------------------- one-time download

@dataclass
class BatchFiles:
    filename: str
    content: bytes


def download_batch(batch: CardBatch, *, actor) -> BatchFiles:
    """Hand out the batch's clear PINs once, as a ZIP of the printable PDF card sheet, a
    CSV and an XLSX. The encrypted PIN list is deleted in the same transaction, so a second
    call is refused (reason 'downloaded'); if building the files fails nothing changes."""
    from .documents import build_zip

    with transaction.atomic():
        batch = _lock_batch(batch)
        _check_actor(actor, batch.issuer)
        pending = CardBatchDownload.objects.select_for_update().filter(batch=batch).first()
        if pending is None:
            raise CardRefused("batch", "The PINs of this batch have already been downloaded.", "downloaded")
        rows = [tuple(line.split(",", 1)) for line in crypto.decrypt(pending.token).splitlines() if line]
        content = build_zip(batch, rows)
        pending.delete()
        batch.downloaded_at = timezone.now()
        batch.downloaded_by = actor if getattr(actor, "pk", None) else None
        batch.save(update_fields=["downloaded_at", "downloaded_by"])
        audit.record("card_batch.download", batch, actor=actor, cards=len(rows))
    return BatchFiles(filename=f"cards-batch-{batch.pk}.zip", content=content)


def write_download(batch: CardBatch, *, actor, directory) -> str:
    """Download once into `directory` (for the management command); returns the path."""
    from pathlib import Path

    files = download_batch(batch, actor=actor)
    path = Path(directory) / files.filename
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:  # never overwrite an earlier download
        fh.write(files.content)
    return str(path)
