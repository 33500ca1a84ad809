"""Packages (what a customer buys) and per-node price lists (what each reseller pays)."""
from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from ispcore.accounts.visibility import VisibleQuerySet
from ispcore.core.money import MoneyField

CUSTOMER_TYPES = ("pppoe", "hotspot", "static", "other")


def format_rate(kbps: int) -> str:
    """RouterOS rate notation: 2048 -> '2M', 512 -> '512k', 1536 -> '1536k'."""
    if kbps and kbps % 1024 == 0:
        return f"{kbps // 1024}M"
    return f"{kbps}k"


class Package(models.Model):
    """A service a customer buys: price, validity, speed and optional quotas.

    Speeds are in kbit/s from the customer's point of view (upload, download); the
    MikroTik rate-limit string is derived, never stored, so it cannot drift."""

    class BillingMode(models.TextChoices):
        MONTHLY = "monthly", _("Monthly (bill on the 1st)")
        PREPAID_DAYS = "prepaid_days", _("Prepaid, N days")
        PREPAID_HOURS = "prepaid_hours", _("Prepaid, N hours")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="packages")
    name = models.CharField(max_length=120)
    for_pppoe = models.BooleanField(default=False)
    for_hotspot = models.BooleanField(default=False)
    for_static = models.BooleanField(default=False)
    for_other = models.BooleanField(default=False)
    billing_mode = models.CharField(max_length=16, choices=BillingMode.choices)
    price = MoneyField(validators=[MinValueValidator(Decimal("0"))])
    validity = models.PositiveIntegerField(
        default=30, help_text=_("Days for monthly and prepaid-days packages, hours for prepaid-hours ones.")
    )
    upload_kbps = models.PositiveIntegerField(default=0, help_text=_("0 means unlimited"))
    download_kbps = models.PositiveIntegerField(default=0, help_text=_("0 means unlimited"))
    burst_upload_kbps = models.PositiveIntegerField(default=0)
    burst_download_kbps = models.PositiveIntegerField(default=0)
    burst_threshold_upload_kbps = models.PositiveIntegerField(default=0)
    burst_threshold_download_kbps = models.PositiveIntegerField(default=0)
    burst_time_seconds = models.PositiveIntegerField(default=0)
    priority = models.PositiveSmallIntegerField(default=8)
    data_quota_mb = models.PositiveBigIntegerField(null=True, blank=True)
    time_quota_minutes = models.PositiveIntegerField(null=True, blank=True)
    grace_minutes = models.PositiveIntegerField(default=0, help_text=_("Minutes of service kept after expiry."))
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="package_name_unique_in_tenant"),
            models.CheckConstraint(condition=Q(price__gte=0), name="package_price_not_negative"),
            models.CheckConstraint(condition=Q(validity__gt=0), name="package_validity_positive"),
            models.CheckConstraint(condition=Q(priority__gte=1) & Q(priority__lte=8), name="package_priority_1_8"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def customer_types(self) -> list[str]:
        return [t for t in CUSTOMER_TYPES if getattr(self, f"for_{t}")]

    def validity_delta(self):
        """How long one purchase lasts."""
        from datetime import timedelta

        if self.billing_mode == self.BillingMode.PREPAID_HOURS:
            return timedelta(hours=self.validity)
        return timedelta(days=self.validity)

    def serves(self, customer_type: str) -> bool:
        return bool(getattr(self, f"for_{customer_type}", False))

    @property
    def rate_limit(self) -> str:
        """Mikrotik-Rate-Limit: 'rx/tx [burst-rx/burst-tx threshold-rx/threshold-tx time-rx/time-tx priority]'.

        rx is what the router receives from the customer (the customer's upload)."""
        if not (self.upload_kbps or self.download_kbps):
            return ""
        base = f"{format_rate(self.upload_kbps)}/{format_rate(self.download_kbps)}"
        if not (self.burst_upload_kbps or self.burst_download_kbps):
            return base
        t = self.burst_time_seconds
        return (
            f"{base} {format_rate(self.burst_upload_kbps)}/{format_rate(self.burst_download_kbps)} "
            f"{format_rate(self.burst_threshold_upload_kbps)}/{format_rate(self.burst_threshold_download_kbps)} "
            f"{t}/{t} {self.priority}"
        )


class PriceListEntry(models.Model):
    """What a node pays its parent for a package (`node_price`) and what its customers
    pay (`customer_price`); the difference is the node's commission. A node may sell
    only the packages it has an entry for."""

    node = models.ForeignKey("accounts.AccountNode", on_delete=models.CASCADE, related_name="price_entries")
    package = models.ForeignKey(Package, on_delete=models.CASCADE, related_name="price_entries")
    node_price = MoneyField(validators=[MinValueValidator(Decimal("0"))])
    customer_price = MoneyField(validators=[MinValueValidator(Decimal("0"))])
    # Per-minute reseller billing (ispcore.billing.minutes): what the node pays its parent
    # for each minute one of its customers on this package is online and active. Six
    # places, because real rates are fractions of a paisa (600 BDT / 30 days = 0.013889).
    # Null: this node is not billed per minute for the package.
    minute_price = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                       validators=[MinValueValidator(Decimal("0"))])
    is_active = models.BooleanField(default=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["node_id", "package_id"]
        verbose_name_plural = "price list entries"
        constraints = [
            models.UniqueConstraint(fields=["node", "package"], name="one_price_per_node_package"),
            models.CheckConstraint(condition=Q(node_price__gte=0), name="node_price_not_negative"),
            models.CheckConstraint(condition=Q(customer_price__gte=F("node_price")), name="customer_price_covers_node_price"),
            models.CheckConstraint(condition=Q(minute_price__isnull=True) | Q(minute_price__gte=0),
                                   name="minute_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.node} / {self.package}: {self.node_price} -> {self.customer_price}"

    @property
    def commission(self) -> Decimal:
        return self.customer_price - self.node_price
