"""The money core: wallets and an immutable double-entry ledger.

A wallet's `balance` is a cache of the sum of its entries, changed only by
`services.post_transaction` under a row lock in the same transaction as the entries;
`manage.py rebuild_balances --check` proves the cache against the ledger."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from ispcore.accounts.visibility import VisibleQuerySet
from ispcore.core.money import MoneyField


class Wallet(models.Model):
    """A balance owned by exactly one of: an account node, a customer, or the tenant
    itself (a system account such as revenue or cash in hand).

    The database refuses a balance below `-credit_limit` unless the wallet is
    `unbounded` (system accounts): a prepaid wallet (limit 0) never goes negative,
    a postpaid one never past its limit."""

    class SystemCode(models.TextChoices):
        REVENUE = "revenue", _("ISP income")
        VAT = "vat", _("VAT payable")
        CASH = "cash", _("Cash in hand")
        GATEWAY = "gateway", _("Online payments clearing")
        ADJUSTMENT = "adjustment", _("Adjustments and opening balances")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="wallets")
    node = models.OneToOneField(
        "accounts.AccountNode", null=True, blank=True, on_delete=models.PROTECT, related_name="wallet"
    )
    customer = models.OneToOneField(
        "subscribers.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="wallet"
    )
    system_code = models.CharField(max_length=32, blank=True, default="")
    balance = MoneyField(default=Decimal("0"))
    credit_limit = MoneyField(default=Decimal("0"))
    unbounded = models.BooleanField(default=False)
    currency = models.CharField(max_length=3, default="BDT")
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unbounded=True) | Q(balance__gte=-F("credit_limit")),
                name="wallet_balance_within_credit_limit",
            ),
            models.CheckConstraint(condition=Q(credit_limit__gte=0), name="wallet_credit_limit_not_negative"),
            models.CheckConstraint(
                condition=(
                    Q(node__isnull=False, customer__isnull=True, system_code="")
                    | Q(node__isnull=True, customer__isnull=False, system_code="")
                    | Q(node__isnull=True, customer__isnull=True) & ~Q(system_code="")
                ),
                name="wallet_has_exactly_one_owner",
            ),
            models.UniqueConstraint(
                fields=["tenant", "system_code"], condition=~Q(system_code=""), name="one_system_wallet_per_code"
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet#{self.pk} {self.owner_label}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            from .locks import assert_locked

            assert_locked(self)
        super().save(*args, **kwargs)

    @property
    def owner_label(self) -> str:
        if self.node_id:
            return f"node:{self.node_id}"
        if self.customer_id:
            return f"customer:{self.customer_id}"
        return f"system:{self.system_code}"

    @property
    def available(self) -> Decimal | None:
        """What can still be spent; None for unbounded system accounts."""
        return None if self.unbounded else self.balance + self.credit_limit


class LedgerTransaction(models.Model):
    """One business event that moves money; its entries sum to zero. The idempotency key
    is unique: posting the same event twice returns the first transaction."""

    tenant = models.ForeignKey("accounts.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, db_index=True)
    memo = models.CharField(max_length=255, blank=True, default="")
    reference = models.CharField(max_length=120, blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class LedgerEntry(models.Model):
    """One leg of a transaction on one wallet: positive credits it, negative debits it.
    Entries are never updated or deleted (enforced here and, on PostgreSQL, by a trigger)."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    amount = MoneyField()
    balance_after = MoneyField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_not_zero")]
        indexes = [models.Index(fields=["wallet", "-id"])]

    def __str__(self) -> str:
        return f"{self.amount} on wallet {self.wallet_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("ledger entries are immutable; post a correcting transaction instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("ledger entries are immutable; post a correcting transaction instead")


class PackageSale(models.Model):
    """One sale of a package to a customer: who paid, what it cost at each level (in the
    ledger transaction), and how the expiry moved. Unique per idempotency key, so a
    retried purchase neither charges nor extends twice."""

    class Payer(models.TextChoices):
        CUSTOMER = "customer", _("Customer's balance")
        NODE = "node", _("Seller's balance")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("subscribers.Customer", on_delete=models.PROTECT, related_name="sales")
    package = models.ForeignKey("catalog.Package", on_delete=models.PROTECT, related_name="sales")
    node = models.ForeignKey("accounts.AccountNode", on_delete=models.PROTECT, related_name="sales")
    payer = models.CharField(max_length=10, choices=Payer.choices)
    price = MoneyField()
    transaction = models.OneToOneField(LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="sale")
    idempotency_key = models.CharField(max_length=200, unique=True)
    previous_expiry = models.DateTimeField(null=True, blank=True)
    new_expiry = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.package} to {self.customer} ({self.price})"


class Invoice(models.Model):
    """A monthly bill. One per customer and period (the constraint makes the monthly run
    idempotent); `total` is what this invoice charges, `previous_due` is informational."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="invoices")
    customer = models.ForeignKey("subscribers.Customer", on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=40)
    period = models.DateField(help_text=_("First day of the month billed."))
    issued_at = models.DateTimeField()
    due_date = models.DateField()
    subtotal = MoneyField()
    discount = MoneyField(default=Decimal("0"))
    vat_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"))
    vat = MoneyField(default=Decimal("0"))
    total = MoneyField()
    previous_due = MoneyField(default=Decimal("0"))
    paid = MoneyField(default=Decimal("0"))
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)
    transaction = models.OneToOneField(LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="invoice")
    run = models.ForeignKey("core.JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-period", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period"], name="one_invoice_per_customer_month"),
            models.UniqueConstraint(fields=["tenant", "number"], name="invoice_number_unique"),
            models.CheckConstraint(condition=Q(paid__gte=0) & Q(paid__lte=F("total")), name="invoice_paid_in_range"),
        ]
        indexes = [models.Index(fields=["tenant", "status", "due_date"])]

    def __str__(self) -> str:
        return self.number

    @property
    def outstanding(self) -> Decimal:
        return self.total - self.paid


class InvoiceLine(models.Model):
    """One charge on an invoice (a month of a package, a prorated part month, a discount)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    description = models.CharField(max_length=200)
    quantity = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("1"))
    unit_price = MoneyField()
    amount = MoneyField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class Payment(models.Model):
    """Money received from a customer. Cash stays 'held' by the collector until deposited."""

    class Method(models.TextChoices):
        CASH = "cash", _("Cash")
        ONLINE = "online", _("Online gateway")
        BKASH = "bkash", _("bKash")
        SEND_MONEY = "send_money", _("Send money (bKash/Nagad)")
        CARD = "card", _("Recharge card")
        ADJUSTMENT = "adjustment", _("Adjustment")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey("subscribers.Customer", on_delete=models.PROTECT, related_name="payments")
    amount = MoneyField()
    method = models.CharField(max_length=12, choices=Method.choices)
    receipt_number = models.CharField(max_length=40)
    reference = models.CharField(max_length=120, blank=True, default="", help_text=_("Gateway or send-money trx id."))
    idempotency_key = models.CharField(max_length=200, unique=True)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="payment")
    collected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="collected_payments")
    deposited_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_positive"),
            models.UniqueConstraint(fields=["tenant", "receipt_number"], name="receipt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.receipt_number}: {self.amount}"


class InvoicePayment(models.Model):
    """How much of a payment settled which invoice (oldest first)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    amount = MoneyField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_positive")]

    def __str__(self) -> str:
        return f"{self.amount} of {self.payment} to {self.invoice}"


class ServiceSpan(models.Model):
    """A stretch of time a customer was active on one package at one node: the history that
    per-minute billing needs (the Customer row only knows the present, and a late or
    repeated tick must bill past minutes as they were).

    Written only by a PostgreSQL trigger on subscribers_customer (migration 0005): a change
    of status, package or node closes the open span at the transaction's time and, if the
    customer is now active with a package, opens a new one. No code path can forget it."""

    customer = models.ForeignKey("subscribers.Customer", on_delete=models.DO_NOTHING, related_name="+",
                                 db_constraint=False)
    node_id = models.BigIntegerField()
    package_id = models.BigIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["customer_id", "started_at"]
        indexes = [
            models.Index(fields=["node_id", "started_at"], name="billing_span_node"),
            models.Index(fields=["customer"], condition=Q(ended_at__isnull=True), name="billing_span_open"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                                   name="billing_span_ordered"),
        ]

    def __str__(self) -> str:
        return f"customer {self.customer_id} active {self.started_at}..{self.ended_at or ''}"


class MinuteBillingState(models.Model):
    """Per-minute billing of one selling node: every whole minute before `billed_until` has
    been charged, exactly once. The row is locked and advanced in the same transaction as
    the ledger postings for those minutes, so a crash leaves both or neither.

    `carry` holds, per wallet leg, the fraction of a paisa computed but not yet posted (the
    ledger keeps 2 places, rates keep 6); it is added to the next tick so nothing is lost.
    `suspend_at_zero` overrides the MINUTE_BILLING_SUSPEND_AT_ZERO setting for this node."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    node = models.OneToOneField("accounts.AccountNode", on_delete=models.PROTECT, related_name="minute_billing")
    billed_until = models.DateTimeField()
    carry = models.JSONField(default=dict, blank=True)
    suspend_at_zero = models.BooleanField(null=True, blank=True)
    refused_at = models.DateTimeField(null=True, blank=True, help_text=_("Last time the wallet could not cover a tick."))
    refused_reason = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["node_id"]
        indexes = [models.Index(fields=["billed_until"])]

    def __str__(self) -> str:
        return f"node {self.node_id} billed until {self.billed_until}"


class MinuteCharge(models.Model):
    """What one tick charged one node for one range of minutes: customer-minutes per
    package, the exact amount at 6 places and what was posted (2 places, after the carry).
    Unique per node and range start: the record of exactly-once."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    node = models.ForeignKey("accounts.AccountNode", on_delete=models.PROTECT, related_name="minute_charges")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    minutes = models.PositiveIntegerField(default=0, help_text=_("Customer-minutes charged."))
    detail = models.JSONField(default=dict, blank=True, help_text=_("package id -> customer-minutes"))
    exact = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    posted = MoneyField(default=Decimal("0"))
    transaction = models.OneToOneField(LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="minute_charge")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["node", "period_start"], name="one_minute_charge_per_node_start"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="minute_charge_range_ordered"),
        ]

    def __str__(self) -> str:
        return f"node {self.node_id} {self.period_start}..{self.period_end}: {self.posted}"


class ResellerStatement(models.Model):
    """A postpaid node's monthly bill for per-minute billing: the customer-minutes and the
    amount charged in the month (from its MinuteCharge rows, by the month of each range's
    start in the tenant's time zone) and what it owed when the statement was issued. The
    debt itself is already in the ledger (the node's wallet); the statement asks for it.
    One per node and month, so the monthly run can repeat safely."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    node = models.ForeignKey("accounts.AccountNode", on_delete=models.PROTECT, related_name="statements")
    number = models.CharField(max_length=40)
    period = models.DateField(help_text=_("First day of the month billed."))
    minutes = models.PositiveBigIntegerField(default=0)
    charged = MoneyField(default=Decimal("0"))
    balance = MoneyField(help_text=_("The wallet balance when issued (negative: owed)."))
    credit_limit = MoneyField(default=Decimal("0"))
    due = MoneyField(default=Decimal("0"))
    due_date = models.DateField()
    issued_at = models.DateTimeField()
    run = models.ForeignKey("core.JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-period", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["node", "period"], name="one_statement_per_node_month"),
            models.UniqueConstraint(fields=["tenant", "number"], name="statement_number_unique"),
            models.CheckConstraint(condition=Q(due__gte=0), name="statement_due_not_negative"),
        ]

    def __str__(self) -> str:
        return self.number
