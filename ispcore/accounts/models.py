"""Tenants (ISPs), users with exactly one of the seven roles, and the account-node tree."""
from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .roles import ManagerPermission, NodeKind, Role
from .visibility import VisibleQuerySet


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(_("%(value)s is not a time zone such as Asia/Dhaka."), params={"value": value}) from None


def default_warning_hours() -> list[int]:
    return [72, 24]


class Tenant(models.Model):
    """An ISP on the platform. Its timezone decides 'the 1st of the month' and 'expires today'."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(max_length=64, default="Asia/Dhaka", validators=[validate_timezone])
    currency = models.CharField(max_length=3, default="BDT")
    vat_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )
    # Filled by the SMS module (default region, sender ids, quiet hours, ...).
    sms_settings = models.JSONField(default=dict, blank=True)
    phone_region = models.CharField(max_length=2, default="BD", help_text=_("Default region for mobile numbers."))
    # Billing policy, in the tenant's own time zone.
    expiry_warning_hours = models.JSONField(
        default=default_warning_hours, blank=True, help_text=_("Warn customers this many hours before expiry.")
    )
    invoice_due_days = models.PositiveSmallIntegerField(default=10, help_text=_("Days after issue an invoice is due."))
    suspend_after_days = models.PositiveSmallIntegerField(
        default=7, help_text=_("Suspend monthly customers this many days after an unpaid invoice's due date.")
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(vat_percent__gte=0) & Q(vat_percent__lte=100), name="tenant_vat_range"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def root_node(self) -> AccountNode:
        return self.nodes.get(parent__isnull=True)


class AccountNode(models.Model):
    """A place in a tenant's selling tree: the ISP at the root, resellers, sub-resellers,
    card distributors. `path` is a materialized path of ids ('/1/5/12/') so a subtree is
    one indexed prefix match; it never changes after creation (nodes do not move)."""

    class BillingMode(models.TextChoices):
        PREPAID = "prepaid", _("Prepaid")
        POSTPAID = "postpaid", _("Postpaid")

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="nodes")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    kind = models.CharField(max_length=20, choices=NodeKind.choices)
    name = models.CharField(max_length=120)
    path = models.CharField(max_length=255, db_index=True, editable=False, default="")
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    # Prepaid nodes top up and are debited; postpaid ones accrue debt up to their
    # wallet's credit limit (the limit lives on the wallet, beside the balance it bounds).
    billing_mode = models.CharField(max_length=10, choices=BillingMode.choices, default=BillingMode.PREPAID)
    mobile = models.CharField(max_length=20, blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["tenant"], condition=Q(parent__isnull=True), name="one_root_node_per_tenant"),
            models.CheckConstraint(
                condition=Q(parent__isnull=True, kind=NodeKind.ISP) | Q(parent__isnull=False) & ~Q(kind=NodeKind.ISP),
                name="only_root_is_isp",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def is_descendant_of(self, other: AccountNode, *, include_self: bool = True) -> bool:
        if self.path == other.path:
            return include_self
        return self.path.startswith(other.path)

    def ancestors(self) -> list[AccountNode]:
        """The chain from the root down to (not including) this node, root first."""
        ids = [int(p) for p in self.path.strip("/").split("/") if p][:-1]
        by_id = {n.id: n for n in AccountNode.objects.filter(id__in=ids)}
        return [by_id[i] for i in ids]


class VisibleUserManager(UserManager.from_queryset(VisibleQuerySet)):
    """Django's user manager (create_user, natural keys) plus `visible_to`."""


class User(AbstractUser):
    """A panel login with exactly one role. Staff roles hang on an account node;
    a customer's login is linked from its Customer row; the super admin has no tenant."""

    role = models.CharField(max_length=20, choices=Role.choices)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    node = models.ForeignKey(AccountNode, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    permissions = models.JSONField(default=list, blank=True, help_text=_("Manager permissions."))
    mobile = models.CharField(max_length=20, blank=True, default="")

    objects = VisibleUserManager()

    class Meta:
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role=Role.SUPER_ADMIN, tenant__isnull=True) | ~Q(role=Role.SUPER_ADMIN) & Q(tenant__isnull=False),
                name="tenant_matches_role",
            ),
        ]

    def has_manager_permission(self, perm: str) -> bool:
        if self.role != Role.MANAGER:
            return False
        return perm in (self.permissions or [])

    def clean(self) -> None:
        unknown = set(self.permissions or []) - set(ManagerPermission.values)
        if unknown:
            raise ValidationError({"permissions": _("Unknown permissions: %s") % ", ".join(sorted(unknown))})
