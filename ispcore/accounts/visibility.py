"""Who sees what: the one mechanism, `Model.objects.visible_to(user)`.

Every view, API endpoint, export, admin page and form choice narrows its queryset
through here. The rules are declared below, one per model, in one table, so the
whole policy can be read (and tested as a matrix) in one place:

* tenant isolation always: a user sees nothing of another tenant;
* the admin sees the whole tenant; resellers, sub-resellers and managers see the
  subtree of their node (materialized-path prefix); a card distributor sees its own
  node; a customer sees only itself;
* a manager additionally needs the permission the rule names;
* the super admin sees everything.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import models
from django.db.models import Q

from .roles import ManagerPermission as P
from .roles import Role

NOTHING = Q(pk__in=[])


@dataclass(frozen=True)
class Rule:
    """How one model maps onto tenants, nodes and customers.

    tenant: lookup to the tenant id. nodes: lookups to an AccountNode, any of which
    puts the row in a subtree. customer: lookup to the Customer row the customer
    role may see (None: customers see nothing). distributor: lookups to the node
    a card distributor must own (None: nothing). tenant_wide: roles that see every
    row of their tenant. manager_perm: what a manager needs to see anything.
    multi: the lookups cross a to-many relation (use a subquery, never duplicates).
    """

    tenant: str
    nodes: tuple[str, ...] = ()
    customer: str | None = None
    distributor: tuple[str, ...] | None = None
    tenant_wide: frozenset[str] = frozenset()
    manager_perm: str | None = None
    multi: bool = False
    self_user: str | None = None
    extra: dict[str, Callable[[object], Q]] = field(default_factory=dict)


def _customer_packages(user) -> Q:
    customer = getattr(user, "customer_profile", None)
    if customer is None:
        return NOTHING
    q = Q(is_active=True, **{f"for_{customer.customer_type}": True})
    if customer.node.parent_id is None:
        return q
    return q & Q(price_entries__node_id=customer.node_id)


RULES: dict[str, Rule] = {
    "accounts.tenant": Rule(
        tenant="pk",
        tenant_wide=frozenset(Role.values),
    ),
    "accounts.accountnode": Rule(tenant="tenant", nodes=("",), distributor=("",)),
    "accounts.user": Rule(
        tenant="tenant", nodes=("node",), distributor=(), self_user="pk",
    ),
    "catalog.package": Rule(
        tenant="tenant",
        nodes=("price_entries__node",),
        tenant_wide=frozenset({Role.MANAGER}),
        multi=True,
        extra={Role.CUSTOMER: _customer_packages},
    ),
    "catalog.pricelistentry": Rule(tenant="node__tenant", nodes=("node",)),
    "subscribers.zone": Rule(
        tenant="tenant",
        tenant_wide=frozenset({Role.RESELLER, Role.SUB_RESELLER, Role.MANAGER}),
    ),
    # Routers are the ISP's infrastructure: the admin and managers allowed to manage them.
    "subscribers.nas": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}), manager_perm=P.MANAGE_NAS),
    "subscribers.customer": Rule(tenant="tenant", nodes=("node",), customer="", manager_perm=P.VIEW_CUSTOMERS),
    "billing.wallet": Rule(
        tenant="tenant", nodes=("node", "customer__node"), customer="customer",
        distributor=("node",), manager_perm=P.VIEW_LEDGER,
    ),
    "billing.packagesale": Rule(tenant="tenant", nodes=("node",), customer="customer", manager_perm=P.VIEW_CUSTOMERS),
    "billing.invoice": Rule(tenant="tenant", nodes=("customer__node",), customer="customer",
                            manager_perm=P.VIEW_CUSTOMERS),
    "billing.payment": Rule(tenant="tenant", nodes=("customer__node",), customer="customer",
                            manager_perm=P.VIEW_CUSTOMERS),
    "billing.ledgerentry": Rule(
        tenant="wallet__tenant", nodes=("wallet__node", "wallet__customer__node"),
        customer="wallet__customer", distributor=("wallet__node",), manager_perm=P.VIEW_LEDGER,
    ),
    # IPAM is the ISP's infrastructure: the admin and managers allowed to manage routers see
    # the tenant's prefixes and reservations; resellers, sub-resellers, card distributors and
    # customers see none.
    "ipam.prefix": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}), manager_perm=P.MANAGE_NAS),
    "ipam.reservation": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}), manager_perm=P.MANAGE_NAS),
    # Assignments: the same, plus resellers/sub-resellers see those of their subtree's customers
    # and a customer its own; router-interface assignments (no customer) stay infrastructure.
    "ipam.assignment": Rule(
        tenant="tenant", nodes=("customer__node",), customer="customer",
        tenant_wide=frozenset({Role.MANAGER}), manager_perm=P.MANAGE_NAS,
    ),
    # Recharge cards: the issuer's subtree sees its batches and cards (managers need the
    # ledger permission); a card distributor sees the batches sold/issued to it and their
    # cards; a customer sees the cards it redeemed.
    "cards.cardbatch": Rule(
        tenant="tenant", nodes=("issuer",), distributor=("distributor",), manager_perm=P.VIEW_LEDGER,
    ),
    "cards.rechargecard": Rule(
        tenant="tenant", nodes=("batch__issuer",), customer="used_by", distributor=("batch__distributor",),
        manager_perm=P.VIEW_LEDGER,
    ),
    # SMS: messages are seen by the subtree of the customer (or sending user) they belong to,
    # plus whoever created them; managers need "view_sms" (without it: only what they sent).
    # Resellers see their customers' messages and inbox, never the ISP's unknown senders.
    "notifications.message": Rule(tenant="tenant", nodes=("node",), self_user="created_by",
                                  manager_perm=P.VIEW_SMS),
    "notifications.inboundmessage": Rule(tenant="tenant", nodes=("customer__node",), manager_perm=P.VIEW_SMS),
    "notifications.campaign": Rule(tenant="tenant", nodes=("node",), self_user="created_by",
                                   manager_perm=P.VIEW_SMS),
    "notifications.supportticket": Rule(tenant="tenant", nodes=("customer__node",), customer="customer",
                                        manager_perm=P.VIEW_SMS),
    # Templates, lines and groups are the ISP's sending tools: the admin and managers who send.
    "notifications.smstemplate": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}),
                                      manager_perm=P.SEND_SMS),
    "notifications.senderid": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}), manager_perm=P.SEND_SMS),
    "notifications.contactgroup": Rule(tenant="tenant", tenant_wide=frozenset({Role.MANAGER}),
                                       manager_perm=P.SEND_SMS),
    "notifications.providerroute": Rule(tenant="tenant"),
}


def _join(prefix: str, leaf: str) -> str:
    return f"{prefix}__{leaf}" if prefix else leaf


def rule_for(model: type[models.Model]) -> Rule:
    try:
        return RULES[model._meta.label_lower]
    except KeyError:
        raise LookupError(f"no visibility rule for {model._meta.label}; add one to accounts/visibility.py") from None


def scope_q(model: type[models.Model], user) -> Q | None:
    """The filter that limits `model` to what `user` may see; None means everything."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return NOTHING
    role = getattr(user, "role", None)
    if role == Role.SUPER_ADMIN:
        return None
    if not user.tenant_id:
        return NOTHING
    rule = rule_for(model)
    tenant_q = Q(**{rule.tenant: user.tenant_id})
    if role in rule.extra:
        return tenant_q & rule.extra[role](user)
    if role == Role.ADMIN or role in rule.tenant_wide:
        if role == Role.MANAGER and rule.manager_perm and not user.has_manager_permission(rule.manager_perm):
            return NOTHING
        return tenant_q
    self_q = Q(**{rule.self_user: user.pk}) if rule.self_user else NOTHING
    if role in (Role.RESELLER, Role.SUB_RESELLER, Role.MANAGER):
        if role == Role.MANAGER and rule.manager_perm and not user.has_manager_permission(rule.manager_perm):
            return self_q if rule.self_user else NOTHING
        node = user.node
        if node is None or not rule.nodes:
            return tenant_q & self_q
        q = NOTHING
        for lookup in rule.nodes:
            q |= Q(**{_join(lookup, "path__startswith"): node.path})
        return tenant_q & (q | self_q)
    if role == Role.CARD_DISTRIBUTOR:
        q = self_q
        if rule.distributor is not None and user.node_id:
            for lookup in rule.distributor:
                q |= Q(**{_join(lookup, "id") if lookup else "id": user.node_id})
        return tenant_q & q
    if role == Role.CUSTOMER:
        customer = getattr(user, "customer_profile", None)
        q = self_q
        if rule.customer is not None and customer is not None:
            q |= Q(**{_join(rule.customer, "id") if rule.customer else "id": customer.id})
        return tenant_q & q
    return NOTHING


class VisibleQuerySet(models.QuerySet):
    """QuerySet with `visible_to(user)`; the base of every tenant-owned model's manager."""

    def visible_to(self, user) -> VisibleQuerySet:
        q = scope_q(self.model, user)
        if q is None:
            return self.all()
        if rule_for(self.model).multi:
            return self.filter(pk__in=self.model._base_manager.filter(q).values("pk"))
        return self.filter(q)
