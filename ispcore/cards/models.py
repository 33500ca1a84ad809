"""Recharge card batches, the cards, and the one-time download of a batch's clear PINs."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ispcore.accounts.visibility import VisibleQuerySet
from ispcore.core.money import MoneyField


class CardStatus(models.TextChoices):
    UNISSUED = "unissued", _("Unissued")
    ISSUED = "issued", _("Issued to a distributor")
    SOLD = "sold", _("Sold")
    USED = "used", _("Used")
    EXPIRED = "expired", _("Expired")
    VOID = "void", _("Void")


class CardBatch(models.Model):
    """Cards generated together by one issuer node (the ISP root, a reseller or a
    sub-reseller): all of the same kind, face value and validity.

    Guarantees: a batch is sold at most once (status check under the batch row lock plus
    the ledger key ``card:sell:<id>``); ``face_value`` is fixed at generation (for a package
    card, the package's customer price at the issuer); a sold batch always names its
    distributor (database check)."""

    class Kind(models.TextChoices):
        VALUE = "value", _("Money value")
        PACKAGE = "package", _("Package")

    Status = CardStatus

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="card_batches")
    issuer = models.ForeignKey("accounts.AccountNode", on_delete=models.PROTECT, related_name="issued_card_batches")
    distributor = models.ForeignKey(
        "accounts.AccountNode", null=True, blank=True, on_delete=models.PROTECT, related_name="card_batches"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    package = models.ForeignKey(
        "catalog.Package", null=True, blank=True, on_delete=models.PROTECT, related_name="card_batches"
    )
    face_value = MoneyField()
    count = models.PositiveIntegerField()
    valid_until = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=10, choices=CardStatus.choices, default=CardStatus.UNISSUED, db_index=True)
    commission = MoneyField(default=Decimal("0"), help_text=_("What the distributor earned on the sale (c)."))
    sale_price = MoneyField(default=Decimal("0"), help_text=_("What the distributor paid (F - c)."))
    sold_count = models.PositiveIntegerField(default=0)
    memo = models.CharField(max_length=255, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    sold_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    downloaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "card batches"
        constraints = [
            models.CheckConstraint(condition=Q(face_value__gt=0), name="card_batch_face_value_positive"),
            models.CheckConstraint(condition=Q(count__gt=0), name="card_batch_count_positive"),
            models.CheckConstraint(
                condition=Q(kind="value", package__isnull=True) | Q(kind="package", package__isnull=False),
                name="card_batch_package_iff_package_kind",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["issued", "sold"]) | Q(distributor__isnull=False),
                name="card_batch_issued_has_distributor",
            ),
            models.CheckConstraint(condition=Q(commission__gte=0) & Q(sale_price__gte=0),
                                   name="card_batch_sale_amounts_not_negative"),
        ]

    def __str__(self) -> str:
        what = self.package.name if self.kind == self.Kind.PACKAGE and self.package_id else f"{self.face_value}"
        return f"Batch #{self.pk} ({self.count} x {what})"


class RechargeCard(models.Model):
    """One card: a printed serial and a PIN known only as its keyed hash.

    Guarantees: a PIN hash is unique in its tenant (so a PIN names one card); a card is
    used at most once: the redemption is a conditional UPDATE ``status sold -> used`` in the
    transaction that posts ``card:redeem:<id>``, and the database requires ``used_by`` and
    ``used_at`` to be set exactly when the status is ``used``."""

    Status = CardStatus

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(CardBatch, on_delete=models.PROTECT, related_name="cards")
    serial = models.CharField(max_length=20)
    pin_hash = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=10, choices=CardStatus.choices, default=CardStatus.UNISSUED)
    used_by = models.ForeignKey("subscribers.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="used_cards")
    used_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["serial"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "serial"], name="card_serial_unique_in_tenant"),
            models.UniqueConstraint(fields=["tenant", "pin_hash"], name="card_pin_hash_unique_in_tenant"),
            models.CheckConstraint(
                condition=(
                    Q(status="used", used_by__isnull=False, used_at__isnull=False)
                    | ~Q(status="used") & Q(used_by__isnull=True, used_at__isnull=True)
                ),
                name="card_used_iff_used_by_and_used_at",
            ),
        ]
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return f"Card {self.serial} ({self.status})"


class CardBatchDownload(models.Model):
    """The only place the clear PINs of a batch exist after generation: a Fernet token
    (``core.crypto.encrypt``) of ``serial,pin`` lines. Deleted by the first download, in the
    transaction that hands the files out, so the PINs can be downloaded once."""

    batch = models.OneToOneField(CardBatch, on_delete=models.CASCADE, related_name="pending_download")
    token = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "pending card download"

    def __str__(self) -> str:
        return f"PINs of batch #{self.batch_id} (not downloaded yet)"
