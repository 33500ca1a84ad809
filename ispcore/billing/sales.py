"""Selling a package through the reseller chain, and receiving payments.

The price at each level comes from the price lists: a node pays its parent `node_price`
and its customers pay `customer_price`; every level keeps the difference as commission.
For a customer of sub-reseller S under reseller R, paying from its own balance:

    customer  -C                 (C = S's customer price)
    S         +(C - np_S)        S's commission
    R         +(np_S - np_R)     R's commission
    revenue   +np_R              the ISP's share

When the seller pays on the customer's behalf (it collected cash itself), the first two
legs become `S -np_S`. Lock order, everywhere: customer row, then wallets (in id order)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ispcore.accounts.models import AccountNode
from ispcore.accounts.roles import ManagerPermission, Role
from ispcore.catalog.models import Package, PriceListEntry
from ispcore.core import audit
from ispcore.core.money import to_money
from ispcore.subscribers import access, lifecycle
from ispcore.subscribers.models import Customer

from .models import Invoice, InvoicePayment, PackageSale, Payment, Wallet
from .services import LedgerError, open_wallet, post_transaction, system_wallet


class SaleRefused(LedgerError):
    """The sale cannot happen (package not sold here, customer state...); nothing was written."""


@dataclass(frozen=True)
class Level:
    node: AccountNode
    node_price: Decimal
    customer_price: Decimal


def price_chain(customer: Customer, package: Package) -> list[Level]:
    """The selling levels from the root's child down to the customer's node (empty for a
    customer of the ISP itself). Raises SaleRefused if any level does not sell the package."""
    node = customer.node
    if node.parent_id is None:
        return []
    chain_nodes = [*node.ancestors()[1:], node]
    entries = {e.node_id: e for e in PriceListEntry.objects.filter(
        node__in=chain_nodes, package=package, is_active=True)}
    levels = []
    for n in chain_nodes:
        entry = entries.get(n.id)
        if entry is None:
            raise SaleRefused(_("%(node)s does not sell %(package)s.") % {"node": n.name, "package": package.name})
        levels.append(Level(n, entry.node_price, entry.customer_price))
    return levels


def customer_price(customer: Customer, package: Package) -> Decimal:
    chain = price_chain(customer, package)
    return chain[-1].customer_price if chain else to_money(package.price)


def sale_legs(customer: Customer, package: Package, payer: str) -> tuple[Decimal, list[tuple[Wallet, Decimal]]]:
    """The price charged to the payer and the balanced legs of the sale (the payer's leg first)."""
    tenant = customer.tenant
    chain = price_chain(customer, package)
    legs: list[tuple[Wallet, Decimal]] = []
    revenue = system_wallet(tenant, "revenue")
    if not chain:
        if payer != PackageSale.Payer.CUSTOMER:
            raise SaleRefused(_("The ISP's own customers pay from their balance; record their payment first."))
        price = to_money(package.price)
        legs = [(open_wallet(tenant=tenant, customer=customer), -price), (revenue, price)]
    else:
        seller = chain[-1]
        if payer == PackageSale.Payer.CUSTOMER:
            price = seller.customer_price
            legs.append((open_wallet(tenant=tenant, customer=customer), -price))
            legs.append((open_wallet(tenant=tenant, node=seller.node), price - seller.node_price))
        else:
            price = seller.node_price
            legs.append((open_wallet(tenant=tenant, node=seller.node), -price))
        for upper, lower in zip(chain[:-1], chain[1:], strict=False):
            legs.append((open_wallet(tenant=tenant, node=upper.node), lower.node_price - upper.node_price))
        legs.append((revenue, chain[0].node_price))
    merged: dict[int, list] = {}
    for wallet, amount in legs:
        merged.setdefault(wallet.pk, [wallet, Decimal("0")])[1] += amount
    return price, [(w, a) for w, a in merged.values() if a != 0]


def _check_actor(actor, customer: Customer, payer: str) -> None:
    if actor is None:
        return  # system jobs (e.g. card redemption already authorised upstream)
    if not Customer.objects.visible_to(actor).filter(pk=customer.pk).exists():
        raise PermissionDenied(_("You cannot sell to this customer."))
    if actor.role == Role.CUSTOMER and payer != PackageSale.Payer.CUSTOMER:
        raise PermissionDenied(_("A customer pays from its own balance."))
    if actor.role == Role.MANAGER and not actor.has_manager_permission(ManagerPermission.COLLECT_CASH):
        raise PermissionDenied(_("This manager may not sell packages."))
    if actor.role == Role.CARD_DISTRIBUTOR:
        raise PermissionDenied(_("Card distributors sell cards, not packages."))


def purchase_package(customer: Customer, package: Package, *, actor, payer: str = "customer",
                     idempotency_key: str) -> PackageSale:
    """Sell `package` to `customer`: charge the payer, pay every commission along the chain,
    extend the expiry (from now if expired, else from the current expiry), switch the
    package, in one transaction, once per idempotency key. After commit the RADIUS
    snapshot is refreshed and, if the speed changed, a CoA goes to the live sessions."""
    if payer not in PackageSale.Payer.values:
        raise ValidationError({"payer": _("Choose customer or node.")})
    _check_actor(actor, customer, payer)
    with transaction.atomic():
        locked = Customer.objects.select_for_update(of=("self",)).select_related("tenant", "node", "package").get(pk=customer.pk)
        existing = PackageSale.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.customer_id != locked.id or existing.package_id != package.id:
                raise LedgerError(_("This idempotency key was used for another sale."))
            existing.replayed = True
            return existing
        if package.tenant_id != locked.tenant_id or not package.is_active:
            raise SaleRefused(_("This package is not on sale."))
        if not package.serves(locked.customer_type):
            raise SaleRefused(_("This package is not offered to %(type)s customers.") % {"type": locked.customer_type})
        if locked.status in (Customer.Status.SUSPENDED, Customer.Status.DISABLED):
            raise SaleRefused(_("The customer is %(status)s; settle that first.") % {"status": locked.status})
        price, legs = sale_legs(locked, package, payer)
        now = timezone.now()
        old_rate = locked.package.rate_limit if locked.package_id else ""
        previous = locked.expires_at
        was_allowed = locked.status == Customer.Status.ACTIVE
        locked.expires_at = lifecycle.new_expiry(locked, package, now)
        locked.package = package
        locked.status = Customer.Status.ACTIVE
        if package.billing_mode == Package.BillingMode.MONTHLY and locked.billing_start is None:
            locked.billing_start = now
        locked.save(update_fields=["expires_at", "package", "status", "billing_start", "updated_at"])
        audit.emit("package.purchased", tenant_id=locked.tenant_id, customer_id=locked.id, package=package.name,
                   price=str(price), expires_at=locked.expires_at.isoformat())
        # The wallets (the seller's, every reseller's above it, the ISP's revenue account)
        # are shared by every sale of the branch: lock them last, so a sale holds them for
        # the posting and the sale record only (concurrent sales wait on these rows).
        txn = None
        if legs:
            txn = post_transaction(legs=legs, kind="sale", idempotency_key=f"sale:{idempotency_key}", actor=actor,
                                   memo=f"{package.name} for {locked.username}", reference=locked.username,
                                   must_cover=[legs[0][0]])
        sale = PackageSale.objects.create(
            tenant=locked.tenant, customer=locked, package=package, node=locked.node, payer=payer, price=price,
            transaction=txn, idempotency_key=idempotency_key, previous_expiry=previous,
            new_expiry=locked.expires_at, actor=actor if getattr(actor, "pk", None) else None,
        )
        audit.record("package.sale", sale, actor=actor, price=str(price), payer=payer)
        if old_rate != package.rate_limit and previous and previous > now:
            access.refresh_speed_on_commit(locked.id)
        if not was_allowed:
            access.refresh_routers_on_commit(locked.tenant_id)  # off the expired list
    sale.replayed = False
    return sale


CASH_LIKE = {Payment.Method.CASH: "cash", Payment.Method.ADJUSTMENT: "adjustment"}


def _receipt_number(tenant, now, txn) -> str:
    # Derived from the ledger transaction id: unique without a counter to race on.
    local = timezone.localtime(now, tenant.tzinfo)
    return f"R{local:%Y%m}-{txn.id:07d}"


def record_payment(customer: Customer, amount, *, method: str, actor, idempotency_key: str,
                   reference: str = "", receipt_number: str = "") -> Payment:
    """Credit a payment to the customer's balance and settle its oldest open invoices first;
    anything left stays as credit. Idempotent: the same key returns the first payment (a
    gateway callback that arrives twice credits once). A suspended customer with nothing
    overdue left is reactivated."""
    amount = to_money(amount)
    if amount <= 0:
        raise ValidationError({"amount": _("A payment must be more than zero.")})
    if method not in Payment.Method.values:
        raise ValidationError({"method": _("Unknown payment method.")})
    if actor is not None and actor.role == Role.MANAGER and method == Payment.Method.CASH and not \
            actor.has_manager_permission(ManagerPermission.COLLECT_CASH):
        raise PermissionDenied(_("This manager may not collect cash."))
    if actor is not None and not Customer.objects.visible_to(actor).filter(pk=customer.pk).exists():
        raise PermissionDenied(_("You cannot take payments for this customer."))
    with transaction.atomic():
        locked = Customer.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=customer.pk)
        existing = Payment.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.customer_id != locked.id or existing.amount != amount:
                raise LedgerError(_("This idempotency key was used for another payment."))
            existing.replayed = True
            return existing
        tenant = locked.tenant
        source = system_wallet(tenant, CASH_LIKE.get(method, "gateway"))
        txn = post_transaction(
            legs=[(source, -amount), (open_wallet(tenant=tenant, customer=locked), amount)], kind="payment",
            idempotency_key=f"payment:{idempotency_key}", actor=actor, memo=f"{method} payment", reference=reference,
        )
        now = timezone.now()
        payment = Payment.objects.create(
            tenant=tenant, customer=locked, amount=amount, method=method, reference=reference[:120],
            receipt_number=receipt_number or _receipt_number(tenant, now, txn), idempotency_key=idempotency_key,
            transaction=txn, collected_by=actor if method == Payment.Method.CASH and getattr(actor, "pk", None) else None,
        )
        left = amount
        for invoice in Invoice.objects.select_for_update().filter(
                customer=locked, status=Invoice.Status.OPEN).order_by("period", "id"):
            if left <= 0:
                break
            part = min(left, invoice.outstanding)
            InvoicePayment.objects.create(invoice=invoice, payment=payment, amount=part)
            invoice.paid += part
            if invoice.paid == invoice.total:
                invoice.status = Invoice.Status.PAID
            invoice.save(update_fields=["paid", "status"])
            left -= part
        audit.record("payment.received", payment, actor=actor, amount=str(amount), method=method)
        audit.emit("payment.received", tenant_id=tenant.id, customer_id=locked.id, amount=str(amount),
                   method=method, receipt=payment.receipt_number)
        if locked.status == Customer.Status.SUSPENDED and not Invoice.objects.filter(
                customer=locked, status=Invoice.Status.OPEN, due_date__lt=timezone.localdate(now, tenant.tzinfo)
        ).exists():
            lifecycle.reactivate(locked, reason="paid", actor=actor)
    payment.replayed = False
    return payment


def deposit_cash(payment_ids: list[int], *, actor) -> int:
    """Mark cash payments as handed over (deposited); only the admin, or the collector
    itself, may do it. Returns how many changed. The money was already in the ISP's cash
    account from the moment it was collected; this records who no longer holds it."""
    with transaction.atomic():
        qs = Payment.objects.visible_to(actor).select_for_update().filter(
            pk__in=payment_ids, method=Payment.Method.CASH, deposited_at__isnull=True)
        if actor.role not in (Role.ADMIN, Role.SUPER_ADMIN):
            qs = qs.filter(collected_by=actor)
        now = timezone.now()
        changed = 0
        for payment in qs:
            payment.deposited_at = now
            payment.save(update_fields=["deposited_at"])
            audit.record("payment.deposited", payment, actor=actor)
            changed += 1
        return changed


class TopUpMethod:
    """Where a reseller's top-up comes from (the debited account)."""

    CASH = "cash"  #: the ISP's staff took cash from the reseller: the ISP's cash account
    ADJUSTMENT = "adjustment"  #: an admin correction or credit: the adjustment account
    TRANSFER = "transfer"  #: the parent reseller funds its child from its own balance
    CHOICES = (CASH, ADJUSTMENT, TRANSFER)


def top_up_node(node: AccountNode, amount, *, actor, idempotency_key: str, method: str = TopUpMethod.CASH,
                reference: str = ""):
    """Credit a reseller's, sub-reseller's or card distributor's balance (one ledger transaction,
    idempotent by key) and resume the customers that per-minute billing suspended when that
    balance ran out, if it now has something to spend.

    Who may: the super admin and the ISP admin (cash or adjustment, any node of the ISP), a
    manager with the collect-cash permission (cash, nodes it sees), and a reseller or
    sub-reseller for the nodes directly below it, as a transfer from its own balance (which
    must cover it; an admin may make such a transfer too). Returns the LedgerTransaction (``replayed`` True when the key was seen before)."""
    from .minutes import resume_customers_of

    amount = to_money(amount)
    if amount <= 0:
        raise ValidationError({"amount": _("A top-up must be more than zero.")})
    if method not in TopUpMethod.CHOICES:
        raise ValidationError({"method": _("Choose cash, adjustment or transfer.")})
    if node.parent_id is None:
        raise ValidationError({"node": _("The ISP's own account is not topped up; top up a reseller.")})
    if actor is not None:
        if not AccountNode.objects.visible_to(actor).filter(pk=node.pk).exists():
            raise PermissionDenied(_("You cannot top up this account."))
        if actor.role in (Role.RESELLER, Role.SUB_RESELLER):
            if method != TopUpMethod.TRANSFER or node.parent_id != actor.node_id:
                raise PermissionDenied(_("A reseller funds the accounts directly below it, by transfer from its own "
                                         "balance."))
        elif actor.role == Role.MANAGER:
            if method != TopUpMethod.CASH or not actor.has_manager_permission(ManagerPermission.COLLECT_CASH):
                raise PermissionDenied(_("This manager may not take cash top-ups."))
        elif actor.role not in (Role.SUPER_ADMIN, Role.ADMIN):
            raise PermissionDenied(_("You cannot top up this account."))
    with transaction.atomic():
        tenant = node.tenant
        target = open_wallet(tenant=tenant, node=node)
        if method == TopUpMethod.TRANSFER:
            source = open_wallet(tenant=tenant, node=node.parent)
            must_cover = [source]
        else:
            source = system_wallet(tenant, method)
            must_cover = []
        txn = post_transaction(
            legs=[(source, -amount), (target, amount)], kind="topup", idempotency_key=f"topup:{idempotency_key}",
            actor=actor, memo=f"{method} top-up of {node.name}", reference=reference, must_cover=must_cover,
        )
        if txn.replayed:
            return txn
        audit.record("node.topped_up", node, actor=actor, amount=str(amount), method=method, reference=reference,
                     transaction=txn.pk)
        target.refresh_from_db()
        txn.resumed = resume_customers_of(node, target, actor=actor)
    return txn
