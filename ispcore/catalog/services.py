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


@transaction.atomic
def remove_price(entry: PriceListEntry, *, actor) -> None:
    audit.record("price.remove", entry, actor=actor, tenant_id=entry.node.tenant_id)
    entry.delete()
