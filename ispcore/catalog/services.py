"""Writes for packages and price lists."""
from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ispcore.core import audit
from ispcore.core.money import to_money

from .models import CUSTOMER_TYPES, Package, PriceListEntry


def _apply_types(package: Package, customer_types) -> None:
    if customer_types is None:
        return
    unknown = set(customer_types) - set(CUSTOMER_TYPES)
    if unknown or not customer_types:
        raise ValidationError({"customer_types": _("Choose one or more of: %s.") % ", ".join(CUSTOMER_TYPES)})
    for t in CUSTOMER_TYPES:
        setattr(package, f"for_{t}", t in customer_types)


@transaction.atomic
def create_package(*, actor, tenant, customer_types, **fields) -> Package:
    package = Package(tenant=tenant, **fields)
    _apply_types(package, customer_types)
    package.full_clean()
    package.save()
    audit.record("package.create", package, actor=actor)
    return package


@transaction.atomic
def update_package(package: Package, *, actor, customer_types=None, **fields) -> Package:
    for key, value in fields.items():
        setattr(package, key, value)
    _apply_types(package, customer_types)
    package.full_clean()
    package.save()
    audit.record("package.update", package, actor=actor, fields=sorted(fields))
    return package


@transaction.atomic
def delete_package(package: Package, *, actor) -> None:
    if package.customers.exists():
        raise ValidationError({"package": _("Customers use this package; deactivate it instead.")})
    audit.record("package.delete", package, actor=actor)
    package.delete()


@transaction.atomic
def set_price(*, actor, node, package: Package, node_price, customer_price) -> PriceListEntry:
    """Let `node` sell `package`: it pays `node_price` to its parent and its customers pay
    `customer_price`. A node can only sell what its parent sells, and never for less
    than its parent pays (nobody in the chain works at a loss)."""
    node_price, customer_price = to_money(node_price), to_money(customer_price)
    if node.parent_id is None:
        raise ValidationError({"node": _("The ISP sells at the package's own price; set prices for resellers.")})
    if package.tenant_id != node.tenant_id:
        raise ValidationError({"package": _("The package belongs to another tenant.")})
    if node_price < 0 or customer_price < 0:
        raise ValidationError({"node_price": _("Prices cannot be negative.")})
    if customer_price < node_price:
        raise ValidationError({"customer_price": _("The customer price must cover what the reseller pays.")})
    parent = node.parent
    if parent.parent_id is not None:
        parent_entry = PriceListEntry.objects.filter(node=parent, package=package, is_active=True).first()
        if parent_entry is None:
            raise ValidationError({"package": _("The parent reseller does not sell this package.")})
        floor = parent_entry.node_price
    else:
        floor = Decimal("0")
    if node_price < floor:
        raise ValidationError({"node_price": _("Below the parent's own cost of %(floor)s.") % {"floor": floor}})
    entry, _created = PriceListEntry.objects.update_or_create(
        node=node, package=package, defaults={"node_price": node_price, "customer_price": customer_price, "is_active": True}
    )
    audit.record("price.set", entry, actor=actor, tenant_id=node.tenant_id, node_price=node_price, customer_price=customer_price)
    return entry


MINUTE_PLACES = Decimal("0.000001")


def minute_price_from(node_price, validity_minutes: int) -> Decimal:
    """A suggested per-minute rate: the node price spread over the package's validity,
    rounded half-up to 6 places (600 BDT over 30 days -> 0.013889)."""
    return (to_money(node_price) / Decimal(validity_minutes)).quantize(MINUTE_PLACES)


@transaction.atomic
def set_minute_price(*, actor, node, package: Package, minute_price) -> PriceListEntry:
    """Bill `node` per minute for its customers on `package` at `minute_price` (None stops it).
    The node must already sell the package; like node prices, a rate is never below the
    parent's own rate, so every level of the chain earns a commission of zero or more."""
    if isinstance(minute_price, float):
        raise ValidationError({"minute_price": _("Give the rate as a decimal string, not a float.")})
    if minute_price is not None:
        minute_price = Decimal(minute_price)
        if not minute_price.is_finite() or minute_price < 0:
            raise ValidationError({"minute_price": _("A per-minute rate is zero or more.")})
        if minute_price != minute_price.quantize(MINUTE_PLACES):
            raise ValidationError({"minute_price": _("A per-minute rate has at most 6 decimal places.")})
    entry = PriceListEntry.objects.select_for_update().filter(node=node, package=package, is_active=True).first()
    if entry is None:
        raise ValidationError({"package": _("Set the node's price for this package first.")})
    if minute_price is not None and node.parent.parent_id is not None:
        parent = PriceListEntry.objects.filter(node_id=node.parent_id, package=package, is_active=True).first()
        floor = parent.minute_price if parent is not None and parent.minute_price is not None else Decimal("0")
        if minute_price < floor:
            raise ValidationError({"minute_price": _("Below the parent's own rate of %(floor)s.") % {"floor": floor}})
    old = entry.minute_price
    entry.minute_price = minute_price
    entry.save(update_fields=["minute_price"])
    audit.record("price.minute", entry, actor=actor, tenant_id=node.tenant_id, old=old, new=minute_price)
    return entry


@transaction.atomic
def remove_price(entry: PriceListEntry, *, actor) -> None:
    audit.record("price.remove", entry, actor=actor, tenant_id=entry.node.tenant_id)
    entry.delete()
