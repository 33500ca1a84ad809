"""Writes for zones, routers (NAS) and customers."""
from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ispcore.accounts.models import User
from ispcore.accounts.roles import NodeKind, Role
from ispcore.core import audit
from ispcore.core.phone import normalise_mobile

from .models import Customer, Nas, Zone


def _saved(obj, action: str, actor, **data):
    obj.full_clean()
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError as exc:
        raise ValidationError(_("This conflicts with an existing record: %s") % (exc.__cause__ or exc)) from None
    audit.record(action, obj, actor=actor, **data)
    return obj


@transaction.atomic
def create_zone(*, actor, tenant, name: str, parent: Zone | None = None) -> Zone:
    if parent is not None and parent.tenant_id != tenant.id:
        raise ValidationError({"parent": _("The zone belongs to another tenant.")})
    return _saved(Zone(tenant=tenant, name=name, parent=parent), "zone.create", actor)


@transaction.atomic
def update_zone(zone: Zone, *, actor, **fields) -> Zone:
    for k, v in fields.items():
        setattr(zone, k, v)
    return _saved(zone, "zone.update", actor, fields=sorted(fields))


@transaction.atomic
def create_nas(*, actor, tenant, **fields) -> Nas:
    return _saved(Nas(tenant=tenant, **fields), "nas.create", actor)


@transaction.atomic
def update_nas(nas: Nas, *, actor, **fields) -> Nas:
    for k, v in fields.items():
        setattr(nas, k, v)
    return _saved(nas, "nas.update", actor, fields=sorted(k for k in fields if k not in {"secret", "api_password"}))


def _check_customer(customer: Customer) -> None:
    tenant = customer.tenant
    errors = {}
    if customer.node.tenant_id != tenant.id:
        errors["node"] = _("The account node belongs to another tenant.")
    elif customer.node.kind == NodeKind.CARD_DISTRIBUTOR:
        errors["node"] = _("Customers belong to the ISP, a reseller or a sub-reseller, not a card distributor.")
    if customer.zone_id and customer.zone.tenant_id != tenant.id:
        errors["zone"] = _("The zone belongs to another tenant.")
    if customer.package_id:
        if customer.package.tenant_id != tenant.id:
            errors["package"] = _("The package belongs to another tenant.")
        elif not customer.package.serves(customer.customer_type):
            errors["package"] = _("This package is not offered to %(type)s customers.") % {"type": customer.customer_type}
    if customer.mobile:
        try:
            customer.mobile = normalise_mobile(customer.mobile, tenant.phone_region)
        except ValidationError as exc:
            errors["mobile"] = exc.messages
    if customer.mac_address:
        customer.mac_address = customer.mac_address.upper().replace("-", ":")
    if customer.customer_type == Customer.CustomerType.STATIC and not customer.static_ip:
        errors["static_ip"] = _("A static-IP customer needs an address.")
    if Customer.objects.filter(tenant=tenant, username=customer.username).exclude(pk=customer.pk).exists():
        errors["username"] = _("This username is already used in this ISP.")
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def create_customer(*, actor, tenant, node, password: str | None = None, **fields) -> Customer:
    """Create a customer under `node` with its wallet. A password is generated if none is given."""
    from ispcore.billing.services import open_wallet

    customer = Customer(tenant=tenant, node=node, password=password or secrets.token_urlsafe(9), **fields)
    _check_customer(customer)
    _saved(customer, "customer.create", actor)
    open_wallet(tenant=tenant, customer=customer)
    _sync_addresses(customer, actor)
    return customer


def _sync_addresses(customer: Customer, actor) -> None:
    """IPAM owns addresses: a static IP must come from a static pool, and a type change
    releases what the new type may not hold."""
    from ipam.services import sync_customer

    try:
        sync_customer(customer, actor=actor)
    except ValidationError as exc:
        messages = exc.messages if not hasattr(exc, "error_dict") else [m for ms in exc.message_dict.values() for m in ms]
        raise ValidationError({"static_ip": messages}) from None
    customer.refresh_from_db(fields=["static_ip"])


@transaction.atomic
def update_customer(customer: Customer, *, actor, **fields) -> Customer:
    if "node" in fields and fields["node"].tenant_id != customer.tenant_id:
        raise ValidationError({"node": _("The account node belongs to another tenant.")})
    for k, v in fields.items():
        setattr(customer, k, v)
    _check_customer(customer)
    _saved(customer, "customer.update", actor, fields=sorted(k for k in fields if k != "password"))
    if {"static_ip", "customer_type"} & set(fields):
        _sync_addresses(customer, actor)
    return customer


@transaction.atomic
def enable_portal_login(customer: Customer, *, actor, password: str) -> User:
    """Give the customer a login to the user panel (username = the customer's username)."""
    if customer.user_id:
        user = customer.user
    else:
        user = User(username=f"{customer.tenant.slug}.{customer.username}"[:150], role=Role.CUSTOMER,
                    tenant=customer.tenant)
    user.set_password(password)
    user.save()
    if customer.user_id != user.id:
        customer.user = user
        customer.save(update_fields=["user"])
    audit.record("customer.portal_login", customer, actor=actor)
    return user
