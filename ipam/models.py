"""IP address management: prefixes (pools), assignments and reservations.

The rules, and what enforces them (S = the services in `services.py`, P = a
PostgreSQL constraint or trigger from migration 0002, D = a constraint declared
below, on every database):

* Prefixes of a tenant never overlap unless one is an ancestor (explicit `parent`
  chain) of the other: siblings never overlap (S, P exclusion constraint) and a
  child lies strictly inside its parent (S, P trigger). CIDR blocks either nest or
  are disjoint, so these two imply the rule for any pair.
* No address or prefix is assigned twice, nor two assignments overlap (S, D unique,
  P exclusion constraint `tenant_id WITH =, network inet_ops WITH &&`).
* An assignment lies inside its pool, has the pool's unit size (/32, /64, /56, /60),
  is of the kind the pool's role hands out, is not the pool's network or broadcast
  address, not reserved, and not inside a more specific prefix (S, P trigger).
* A static IPv4 never falls inside a dynamic pool (S, P trigger); a dynamic pool
  has no sub-prefixes (S, P trigger); a reservation never covers an assignment (S, P).
* A customer holds at most one assignment of each kind (D unique).
* A prefix's network, tenant, parent, role and delegation size never change after
  creation (S, P trigger): delete and re-create instead.

The services also keep allocations clear of the NAS's own addresses and of
customers' `static_ip` values not yet managed here (checked in Python only).
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import CidrField
from .querysets import NetworkQuerySet

DELEGATION_SIZES = (56, 60)


class Prefix(models.Model):
    """An IPv4 or IPv6 prefix of one tenant, optionally bound to one NAS, with the role
    that decides what is handed out of it. See the module docstring for the guarantees."""

    class Role(models.TextChoices):
        CUSTOMER_STATIC = "customer_static", _("Customer static addresses")
        CUSTOMER_DYNAMIC = "customer_dynamic", _("Customer dynamic pool (router hands out)")
        IPV6_LINK = "ipv6_link", _("IPv6 link /64 pool (Framed-IPv6-Prefix)")
        IPV6_DELEGATED = "ipv6_delegated", _("IPv6 delegated-prefix pool (Delegated-IPv6-Prefix)")
        INFRASTRUCTURE = "infrastructure", _("Infrastructure (router links, loopbacks, containers)")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="ipam_prefixes")
    nas = models.ForeignKey(
        "subscribers.Nas", null=True, blank=True, on_delete=models.PROTECT, related_name="ipam_prefixes",
        help_text=_("The router this pool belongs to; empty for a tenant-wide prefix."),
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    network = CidrField()
    family = models.PositiveSmallIntegerField(choices=[(4, "IPv4"), (6, "IPv6")], editable=False)
    role = models.CharField(max_length=20, choices=Role.choices)
    delegated_prefixlen = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=[(n, f"/{n}") for n in DELEGATION_SIZES],
        help_text=_("Size of each delegated prefix (delegated pools only)."),
    )
    name = models.CharField(max_length=64, blank=True, default="", help_text=_("Pool name on the router."))
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NetworkQuerySet.as_manager()

    class Meta:
        ordering = ["family", "network"]
        verbose_name_plural = "prefixes"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "network"], name="ipam_prefix_unique_network"),
            models.CheckConstraint(condition=Q(family__in=[4, 6]), name="ipam_prefix_family"),
            models.CheckConstraint(
                condition=Q(role__in=["customer_static", "customer_dynamic"], family=4)
                | Q(role__in=["ipv6_link", "ipv6_delegated"], family=6)
                | Q(role="infrastructure"),
                name="ipam_prefix_role_family",
            ),
            models.CheckConstraint(
                condition=Q(role="ipv6_delegated", delegated_prefixlen__in=DELEGATION_SIZES)
                | (~Q(role="ipv6_delegated") & Q(delegated_prefixlen__isnull=True)),
                name="ipam_prefix_delegation_size",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "role"], name="ipam_prefix_tenant_role")]

    def __str__(self) -> str:
        return str(self.network)

    @property
    def unit_prefixlen(self) -> int | None:
        """Length of what one assignment from this prefix is: /32 for static IPv4, /64 for
        links, the delegation size for delegated pools, a single address for infrastructure.
        None for dynamic pools, which the router hands out itself."""
        return {
            self.Role.CUSTOMER_STATIC: 32,
            self.Role.IPV6_LINK: 64,
            self.Role.IPV6_DELEGATED: self.delegated_prefixlen,
            self.Role.INFRASTRUCTURE: 32 if self.family == 4 else 128,
        }.get(self.role)

    @property
    def assignment_kind(self) -> str | None:
        return ROLE_KIND.get(self.role)


class Assignment(models.Model):
    """An address or prefix handed out of a pool to a customer (one per kind) or to a
    router interface. It exists exactly while it is in use: releasing deletes it, and
    deleting the customer or the NAS releases it (CASCADE)."""

    class Kind(models.TextChoices):
        IPV4_STATIC = "ipv4_static", _("Static IPv4 address (Framed-IP-Address)")
        IPV6_LINK = "ipv6_link", _("IPv6 link prefix (Framed-IPv6-Prefix)")
        IPV6_DELEGATED = "ipv6_delegated", _("Delegated IPv6 prefix (Delegated-IPv6-Prefix)")
        INTERFACE = "interface", _("Router interface address")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="ipam_assignments")
    prefix = models.ForeignKey(Prefix, on_delete=models.PROTECT, related_name="assignments")
    customer = models.ForeignKey(
        "subscribers.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="ip_assignments"
    )
    nas = models.ForeignKey(
        "subscribers.Nas", null=True, blank=True, on_delete=models.CASCADE, related_name="ip_assignments"
    )
    interface = models.CharField(max_length=64, blank=True, default="", help_text=_("Router interface name."))
    network = CidrField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    since = models.DateTimeField(default=timezone.now)
    description = models.CharField(max_length=200, blank=True, default="")

    objects = NetworkQuerySet.as_manager()

    class Meta:
        ordering = ["network"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "network"], name="ipam_assignment_unique_network"),
            models.UniqueConstraint(
                fields=["customer", "kind"], condition=Q(customer__isnull=False), name="ipam_assignment_one_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind="interface", nas__isnull=False, customer__isnull=True)
                | (~Q(kind="interface") & Q(customer__isnull=False, nas__isnull=True)),
                name="ipam_assignment_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.network} ({self.get_kind_display()})"

    @property
    def holder(self):
        return self.customer if self.customer_id else self.nas


class Reservation(models.Model):
    """An address or block never handed out: a gateway, a broadcast address, a router's
    own address. Reservations of a tenant never overlap each other nor an assignment."""

    class Kind(models.TextChoices):
        GATEWAY = "gateway", _("Gateway")
        BROADCAST = "broadcast", _("Broadcast")
        ROUTER = "router", _("Router's own address")
        OTHER = "other", _("Other")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="ipam_reservations")
    network = CidrField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    nas = models.ForeignKey(
        "subscribers.Nas", null=True, blank=True, on_delete=models.SET_NULL, related_name="ip_reservations"
    )
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NetworkQuerySet.as_manager()

    class Meta:
        ordering = ["network"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "network"], name="ipam_reservation_unique_network"),
        ]

    def __str__(self) -> str:
        return f"{self.network} ({self.get_kind_display()})"


# Which assignment kind each pool role hands out (dynamic pools: none, the router does).
ROLE_KIND: dict[str, str] = {
    Prefix.Role.CUSTOMER_STATIC: Assignment.Kind.IPV4_STATIC,
    Prefix.Role.IPV6_LINK: Assignment.Kind.IPV6_LINK,
    Prefix.Role.IPV6_DELEGATED: Assignment.Kind.IPV6_DELEGATED,
    Prefix.Role.INFRASTRUCTURE: Assignment.Kind.INTERFACE,
}
KIND_ROLE: dict[str, str] = {kind: role for role, kind in ROLE_KIND.items()}
