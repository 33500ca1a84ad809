"""Customers of the four types, zones, and the routers (NAS) that serve them."""
from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ispcore.accounts.visibility import VisibleQuerySet
from ispcore.core.crypto import EncryptedCharField
from ispcore.core.money import MoneyField

mac_validator = RegexValidator(r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$", _("Enter a MAC address like AA:BB:CC:DD:EE:FF."))
username_validator = RegexValidator(
    r"^[A-Za-z0-9._@+-]{1,64}$", _("Use 1-64 letters, digits and . _ @ + - (no spaces).")
)


class Zone(models.Model):
    """An area of the ISP's coverage; an area can sit inside a zone (`parent`)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="zones")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="areas")
    name = models.CharField(max_length=120)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "parent", "name"], name="zone_name_unique")]

    def __str__(self) -> str:
        return self.name


class Nas(models.Model):
    """A router that asks our RADIUS server. The request's source address identifies it
    (unique across the platform) and so its tenant and shared secret."""

    class NasType(models.TextChoices):
        MIKROTIK = "mikrotik", "MikroTik"
        OTHER = "other", _("Other")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="nases")
    name = models.CharField(max_length=120)
    ip_address = models.GenericIPAddressField(unique=True, help_text=_("Source address of its RADIUS requests."))
    secret = EncryptedCharField(help_text=_("RADIUS shared secret (stored encrypted)."))
    nas_type = models.CharField(max_length=16, choices=NasType.choices, default=NasType.MIKROTIK)
    require_message_authenticator = models.BooleanField(
        default=True, help_text=_("Drop Access-Requests without Message-Authenticator (BlastRADIUS hardening).")
    )
    coa_port = models.PositiveIntegerField(default=3799, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    api_username = models.CharField(max_length=64, blank=True, default="")
    api_password = EncryptedCharField(blank=True, default="")
    api_port = models.PositiveIntegerField(default=8728, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    api_use_ssl = models.BooleanField(default=False)
    api_verify_tls = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "NAS"
        verbose_name_plural = "NAS"

    def __str__(self) -> str:
        return f"{self.name} ({self.ip_address})"


class Customer(models.Model):
    """A subscriber. The password is kept encrypted (not hashed) because CHAP and
    MS-CHAPv2 need it to verify a login; `expires_at` is timezone-aware."""

    class CustomerType(models.TextChoices):
        PPPOE = "pppoe", "PPPoE"
        HOTSPOT = "hotspot", _("Hotspot")
        STATIC = "static", _("Static IP")
        OTHER = "other", _("Other (cable TV, ...)")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        EXPIRED = "expired", _("Expired")
        DISABLED = "disabled", _("Disabled")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="customers")
    node = models.ForeignKey("accounts.AccountNode", on_delete=models.PROTECT, related_name="customers")
    user = models.OneToOneField(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="customer_profile"
    )
    customer_type = models.CharField(max_length=10, choices=CustomerType.choices)
    username = models.CharField(max_length=64, validators=[username_validator])
    password = EncryptedCharField()
    full_name = models.CharField(max_length=120)
    mobile = models.CharField(max_length=16, help_text=_("E.164, e.g. +8801712345678"))
    email = models.EmailField(blank=True, default="")
    zone = models.ForeignKey(Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers")
    address = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    package = models.ForeignKey(
        "catalog.Package", null=True, blank=True, on_delete=models.PROTECT, related_name="customers"
    )
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    simultaneous_use = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    mac_address = models.CharField(max_length=17, blank=True, default="", validators=[mac_validator])
    static_ip = models.GenericIPAddressField(null=True, blank=True, protocol="IPv4")
    monthly_discount = MoneyField(default=Decimal("0"), help_text=_("Taken off every monthly invoice."))
    billing_start = models.DateTimeField(null=True, blank=True, help_text=_("When monthly billing began (proration)."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["username"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "username"], name="customer_username_unique_in_tenant"),
            models.CheckConstraint(condition=Q(simultaneous_use__gte=1), name="customer_simultaneous_use_positive"),
        ]
        indexes = [models.Index(fields=["tenant", "status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.username} ({self.full_name})"


class ExpiryNotice(models.Model):
    """A warning sent before an expiry; unique per customer, expiry and lead time, so each
    warning goes out once however often the task runs."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="expiry_notices")
    expires_at = models.DateTimeField()
    hours_before = models.PositiveIntegerField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "expires_at", "hours_before"], name="one_notice_per_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.hours_before}h before {self.expires_at}"
