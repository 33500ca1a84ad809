"""The SMS module's data: routes, lines, credit prices, templates, groups, campaigns,
one row per recipient message, parts with provider ids, delivery reports, the inbox,
opt-outs and keyword rules.

Design rules the rows carry (see docs/ARCHITECTURE.md, "SMS"):

* The send state lives here, one :class:`Message` row per recipient, written before
  anything is sent; workers claim rows with ``SELECT ... FOR UPDATE SKIP LOCKED``.
* A message is committed as ``submitting`` *before* its submit_sm is written, and the
  provider's ids (:class:`MessagePart`) are stored in the same transaction that moves it
  on; a ``submitting`` row found after a crash is matched against delivery reports,
  never resent blindly (``notifications.campaigns.recover_stale``).
* Money never lives here: the SMS balance is a ledger wallet (``notifications.credit``);
  ``Message.cost`` is what was held for it, ``charged_at`` / ``refunded_at`` say which
  ledger posting settled it (each posting has an idempotency key).
* Numbers are E.164 with the ``+`` (``+8801712345678``).
"""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ispcore.accounts.visibility import VisibleQuerySet
from ispcore.core.crypto import EncryptedCharField
from ispcore.core.money import MoneyField

# -- configuration: routes, lines, prices, tenant settings ----------------------------


class ProviderRoute(models.Model):
    """One configured SMS provider (an SMPP bind or an HTTP API account).

    ``tenant`` empty: a platform route the super admin offers to every tenant; set: a
    tenant's own account. ``name`` is the provider name the SmsProvider instance
    carries, so receipts and incoming messages find their route by it. ``settings`` is
    the kind-specific configuration (host, port, system_id, URL, ...) handed to
    ``notifications.providers.build_provider``; the password / API key is kept
    encrypted in ``secret`` and merged in under ``secret_key`` at build time.
    Failover walks active routes by ascending ``priority``; ``price_per_part`` is the
    default price a tenant pays per part on this route (see :class:`RoutePrice`).
    """

    class Kind(models.TextChoices):
        SMPP = "smpp", "SMPP"
        HTTP = "http", "HTTP"

    tenant = models.ForeignKey("accounts.Tenant", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="sms_routes")
    name = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=16, default=Kind.SMPP)
    settings = models.JSONField(default=dict, blank=True)
    secret = EncryptedCharField(blank=True, default="")
    secret_key = models.CharField(max_length=40, default="password",
                                  help_text=_("Settings key the decrypted secret is passed under."))
    priority = models.PositiveSmallIntegerField(default=100, help_text=_("Failover order: lowest first."))
    is_default = models.BooleanField(default=False, help_text=_("The platform's default route."))
    is_active = models.BooleanField(default=True)
    price_per_part = MoneyField(default=Decimal("0.35"))
    max_rate = models.FloatField(null=True, blank=True, help_text=_("Parts per second; empty: unlimited."))
    window = models.PositiveSmallIntegerField(default=10, help_text=_("Submits in flight per bind."))
    balance = MoneyField(null=True, blank=True, help_text=_("Remaining credit reported by the provider."))
    balance_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True, tenant__isnull=True),
                                    name="sms_one_platform_default_route"),
        ]

    def __str__(self) -> str:
        return self.name


class RoutePrice(models.Model):
    """A tenant's own price per part on a route (overrides ``ProviderRoute.price_per_part``)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_route_prices")
    route = models.ForeignKey(ProviderRoute, on_delete=models.CASCADE, related_name="prices")
    price_per_part = MoneyField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "route"], name="sms_route_price_unique"),
            models.CheckConstraint(condition=Q(price_per_part__gte=0), name="sms_route_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.route} {self.price_per_part}"


class SenderId(models.Model):
    """A sender identity, i.e. a line: alphanumeric (1-11 characters, at least one letter)
    or numeric (up to 16 digits).

    ``shared``: send only. ``dedicated``: two-way, its incoming messages land in the inbox
    and keyword rules answer through it. ``route`` pins the line to a provider (a
    dedicated number lives at one provider); empty: the tenant's default route.
    Users may send from a line if ``open_to_all`` or they are in ``allowed_users``
    (admins always may).
    """

    class LineType(models.TextChoices):
        SHARED = "shared", _("Shared (send only)")
        DEDICATED = "dedicated", _("Dedicated (two-way, inbox)")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="sms_senders")
    value = models.CharField(max_length=16)
    line_type = models.CharField(max_length=10, choices=LineType.choices, default=LineType.SHARED)
    route = models.ForeignKey(ProviderRoute, null=True, blank=True, on_delete=models.PROTECT, related_name="lines")
    is_default = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    open_to_all = models.BooleanField(default=True, help_text=_("Every user of the tenant may send from it."))
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="sms_senders")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["value"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "value"], name="sms_sender_unique_in_tenant"),
            models.UniqueConstraint(fields=["tenant"], condition=Q(is_default=True), name="sms_one_default_sender"),
        ]

    def __str__(self) -> str:
        return self.value

    @property
    def is_numeric(self) -> bool:
        return self.value.isdigit()

    def clean(self) -> None:
        from .numbers import validate_sender_id

        validate_sender_id(self.value)


class SmsProfile(models.Model):
    """A tenant's SMS settings (typed; supersedes the free-form ``Tenant.sms_settings``).

    ``require_bangla``: promotional text must contain Bangla (BTRC rule; on by default).
    Quiet hours, in the tenant's time zone: promotional messages are not sent from
    ``quiet_start`` to ``quiet_end`` (may wrap midnight); both empty: no quiet hours.
    Retries: a temporary failure is retried ``retry_count`` times, waiting
    ``retry_backoff_seconds * 2**attempt``. Inbox: incoming text is split on any of
    ``keyword_separators``; an unknown sender gets ``unknown_sender_reply`` or nothing.
    """

    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_profile")
    default_route = models.ForeignKey(ProviderRoute, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    require_bangla = models.BooleanField(default=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    retry_count = models.PositiveSmallIntegerField(default=3)
    retry_backoff_seconds = models.PositiveIntegerField(default=60)
    keyword_separators = models.CharField(max_length=20, default=" ,.;:#-")
    unknown_sender_reply = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"SMS settings of {self.tenant_id}"


# -- content: templates, event templates, groups --------------------------------------


class SmsTemplate(models.Model):
    """A reusable text with placeholders (``{name}``, ``{due}``, ...) filled from the
    customer; placeholders are validated on save (``notifications.templates``)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="sms_templates")
    name = models.CharField(max_length=120)
    body = models.TextField()
    promotional = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="sms_template_name_unique")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .templates import validate_template

        try:
            validate_template(self.body)
        except ValidationError as exc:
            raise ValidationError({"body": exc.messages}) from None


class EventTemplate(models.Model):
    """A tenant's switch and text for one transactional event. No row: the event is on
    and uses the Bangla default from ``notifications.templates.DEFAULT_EVENT_TEMPLATES``."""

    class Event(models.TextChoices):
        PAYMENT_RECEIVED = "payment.received", _("Payment received")
        INVOICE_GENERATED = "invoice.generated", _("Bill generated")
        EXPIRY_WARNING = "customer.expiry_warning", _("Expiry warning")
        EXPIRED = "customer.expired", _("Expired")
        CARD_REDEEMED = "card.redeemed", _("Card redeemed")
        PACKAGE_PURCHASED = "package.purchased", _("Package purchased")
        SUSPENDED = "customer.suspended", _("Suspended")
        OTP = "otp", _("One-time password")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_event_templates")
    event = models.CharField(max_length=40, choices=Event.choices)
    enabled = models.BooleanField(default=True)
    body = models.TextField(blank=True, default="", help_text=_("Empty: the built-in Bangla text."))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event"], name="sms_event_template_unique")]

    def __str__(self) -> str:
        return f"{self.event} ({'on' if self.enabled else 'off'})"

    def clean(self) -> None:
        from .templates import validate_template

        if self.body:
            try:
                validate_template(self.body, event=self.event)
            except ValidationError as exc:
                raise ValidationError({"body": exc.messages}) from None


class ContactGroup(models.Model):
    """An editable list of numbers (customers or not) to send to."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="sms_groups")
    node = models.ForeignKey("accounts.AccountNode", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+", help_text=_("Owner node, for visibility."))
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="sms_group_name_unique")]

    def __str__(self) -> str:
        return self.name


class GroupMember(models.Model):
    """One number in a group (E.164), optionally linked to a customer for placeholders."""

    group = models.ForeignKey(ContactGroup, on_delete=models.CASCADE, related_name="members")
    number = models.CharField(max_length=17)
    name = models.CharField(max_length=120, blank=True, default="")
    customer = models.ForeignKey("subscribers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["group", "number"], name="sms_group_member_unique")]

    def __str__(self) -> str:
        return self.number


# -- sending: campaigns, messages, parts --------------------------------------------


class Campaign(models.Model):
    """A bulk send. ``audience`` says who (see ``notifications.audiences.resolve``):
    ``{"kind": "customers", "zone": [..], "package": [..], "status": [..], "node": id,
    "expiring_within_days": n, "due_gt": "100"}``, ``{"kind": "group", "group": id}`` or
    ``{"kind": "numbers", "numbers": [...]}``. ``start_campaign`` materialises one
    :class:`Message` per valid, unique, not-opted-out recipient and holds the whole cost
    in the ledger before anything is sent; invalid numbers are counted and listed in
    ``report`` (first 1,000), never sent.

    Status: draft -> scheduled (waiting for ``scheduled_at``) -> running <-> paused ->
    completed; cancelled from any non-final status (unsent messages are released and
    their hold refunded).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="sms_campaigns")
    node = models.ForeignKey("accounts.AccountNode", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="+", help_text=_("The creator's node, for visibility."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    name = models.CharField(max_length=160)
    promotional = models.BooleanField(default=True)
    template = models.ForeignKey(SmsTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField(help_text=_("Text with placeholders, copied from the template at creation."))
    line = models.ForeignKey(SenderId, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    sender = models.CharField(max_length=16)
    route = models.ForeignKey(ProviderRoute, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    group = models.ForeignKey(ContactGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    audience = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0, help_text=_("Messages materialised."))
    invalid_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    opted_out_count = models.PositiveIntegerField(default=0)
    parts_total = models.PositiveIntegerField(default=0)
    cost_held = MoneyField(default=Decimal("0"))
    report = models.JSONField(default=dict, blank=True, help_text=_("Invalid numbers (sample) and reasons."))
    created_at = models.DateTimeField(auto_now_add=True)
    materialised_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One text to one number: the unit of sending, billing and crash recovery.

    State machine (``notifications.campaigns``)::

        queued --claim--> submitting --all parts answered--> submitted --DLR--> sent/delivered/...
           ^                 |  \\--temporary failure, attempts left--> queued (next_attempt_at)
           |                 |   \\-rejected / attempts exhausted--> rejected / failed (refunded)
           |                 \\--crash: recover_stale: DLR found -> submitted; none after
           |                    SMS_SUBMITTING_RESEND_AFTER -> queued again
        blocked (opt-out found at send time), cancelled (campaign cancelled): refunded

    ``submitting`` is committed *before* the submit_sm is written; ``claimed_by`` /
    ``claimed_until`` is the worker's lease. ``cost`` = ``parts * price_per_part`` is
    held when the message (or its campaign) is created; ``charged_at`` is set by the
    ledger posting that charged it on acceptance, ``refunded_at`` by the one that
    returned it.
    """

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign", _("Campaign")
        TRANSACTIONAL = "transactional", _("Transactional")
        SINGLE = "single", _("Single message")
        API = "api", _("API")
        REPLY = "reply", _("Keyword reply")
        OTP = "otp", _("One-time password")

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SUBMITTING = "submitting", _("Submitting")
        SUBMITTED = "submitted", _("Submitted")
        SENT = "sent", _("Sent to operator")
        DELIVERED = "delivered", _("Delivered")
        UNDELIVERED = "undelivered", _("Undelivered")
        EXPIRED = "expired", _("Expired")
        REJECTED = "rejected", _("Rejected")
        UNKNOWN = "unknown", _("Unknown")
        FAILED = "failed", _("Failed")
        BLOCKED = "blocked", _("Blocked (opted out / DND)")
        CANCELLED = "cancelled", _("Cancelled")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    promotional = models.BooleanField(default=False)
    event_id = models.BigIntegerField(null=True, blank=True, help_text=_("The OutboxEvent it answers."))
    idempotency_key = models.CharField(max_length=120, blank=True, default="")
    customer = models.ForeignKey("subscribers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    node = models.ForeignKey("accounts.AccountNode", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", help_text=_("For visibility: the customer's or sender's node."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    group = models.ForeignKey(ContactGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_number = models.CharField(max_length=17)
    sender = models.CharField(max_length=16)
    line = models.ForeignKey(SenderId, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    route = models.ForeignKey(ProviderRoute, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    encoding = models.CharField(max_length=5)
    parts = models.PositiveSmallIntegerField()
    price_per_part = MoneyField()
    cost = MoneyField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    claimed_until = models.DateTimeField(null=True, blank=True)
    submitting_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    concat_ref = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")
    charged_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["event_id"], condition=Q(event_id__isnull=False),
                                    name="sms_one_message_per_event"),
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="sms_message_idempotency_key"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="sms_message_cost_not_negative"),
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="sms_msg_campaign_state"),
            models.Index(fields=["state", "next_attempt_at"], name="sms_msg_claimable",
                         condition=Q(state__in=["queued", "submitting"])),
            models.Index(fields=["id"], name="sms_msg_queued", condition=Q(state="queued")),
            models.Index(fields=["route", "to_number"], name="sms_msg_submitting_dest",
                         condition=Q(state="submitting")),
            models.Index(fields=["tenant", "created_at"], name="sms_msg_tenant_created"),
            # the delivery-status webhook scans recently finished messages per tenant
            models.Index(fields=["tenant", "finished_at"], name="sms_msg_tenant_finished",
                         condition=Q(finished_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"SMS#{self.pk} to {self.to_number} ({self.state})"


class MessagePart(models.Model):
    """One submitted part of a message, with the provider's id.

    Written in the transaction that records the submit result (so the id exists before
    the message moves past ``submitting``). ``message_key`` is the id normalised with
    the route's rule; receipts are matched on ``(provider, message_key)``.
    """

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SUBMITTED = "submitted", _("Submitted")
        SENT = "sent", _("Sent to operator")
        DELIVERED = "delivered", _("Delivered")
        UNDELIVERED = "undelivered", _("Undelivered")
        EXPIRED = "expired", _("Expired")
        REJECTED = "rejected", _("Rejected")
        UNKNOWN = "unknown", _("Unknown")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="part_rows")
    index = models.PositiveSmallIntegerField(help_text=_("0-based part number."))
    provider = models.CharField(max_length=60)
    provider_message_id = models.CharField(max_length=80, blank=True, default="")
    message_key = models.CharField(max_length=80, blank=True, default="")
    state = models.CharField(max_length=12, choices=State.choices, default=State.SUBMITTED)
    error = models.CharField(max_length=120, blank=True, default="")
    submitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["message_id", "index"]
        constraints = [models.UniqueConstraint(fields=["message", "index"], name="sms_part_unique")]
        indexes = [models.Index(fields=["provider", "message_key"], name="sms_part_key")]

    def __str__(self) -> str:
        return f"part {self.index} of {self.message_id} ({self.state})"


class DeliveryReport(models.Model):
    """Every delivery receipt as received, matched to its part when the id is known.

    The provider's I/O thread only inserts the row (committed before the deliver_sm_resp
    goes back, so a crash loses nothing: an unanswered receipt is redelivered); workers
    match unprocessed rows in batches (``processed``). A receipt whose id is not known yet
    (it beat the submit_sm_resp, or the worker died before committing the id) stays with
    ``part`` empty and is matched later: when the part is written, or by crash recovery
    on the recipient (``source_addr``) of a message left ``submitting``.
    ``state`` is the normalised part state the receipt reports.
    """

    provider = models.CharField(max_length=60)
    message_id = models.CharField(max_length=80, blank=True, default="")
    message_key = models.CharField(max_length=80, blank=True, default="")
    stat = models.CharField(max_length=16, blank=True, default="")
    err = models.CharField(max_length=16, blank=True, default="")
    state = models.CharField(max_length=12, choices=MessagePart.State.choices)
    recipient = models.CharField(max_length=21, help_text=_("The handset: the receipt's source_addr."))
    done_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    raw = models.TextField(blank=True, default="")
    part = models.ForeignKey(MessagePart, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    matched_at = models.DateTimeField(null=True, blank=True)
    processed = models.BooleanField(default=False, help_text=_("A worker has tried to match it once."))

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["provider", "message_key"], name="sms_dlr_key"),
            models.Index(fields=["provider", "recipient"], name="sms_dlr_unmatched",
                         condition=Q(part__isnull=True)),
            models.Index(fields=["id"], name="sms_dlr_unprocessed", condition=Q(processed=False)),
        ]

    def __str__(self) -> str:
        return f"DLR {self.message_id} {self.stat}"


# -- inbound: inbox, opt-outs, keyword rules --------------------------------------------


class OptOut(models.Model):
    """A number that said STOP (or was opted out by staff / a DND list): promotional
    messages skip it; transactional ones still go. START deletes the row."""

    class Source(models.TextChoices):
        KEYWORD = "keyword", _("STOP keyword")
        STAFF = "staff", _("Staff")
        DND = "dnd", _("Do-not-disturb list")
        API = "api", _("API")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_opt_outs")
    number = models.CharField(max_length=17)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.KEYWORD)
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "number"], name="sms_opt_out_unique")]

    def __str__(self) -> str:
        return self.number


class KeywordRule(models.Model):
    """How a dedicated line answers an incoming message.

    ``match``: ``command``: the first token (after splitting on the tenant's separators,
    case-insensitive) equals ``keyword`` or one of ``aliases`` (Bangla allowed);
    ``contains``: the text contains it (the support-ticket rule). ``action`` says what
    happens; ``reply_body`` (placeholders allowed) overrides the default reply.
    ``line`` empty: every dedicated line of the tenant.
    """

    class Action(models.TextChoices):
        BALANCE = "balance", _("BAL: due and expiry")
        USAGE = "usage", _("USAGE: this month's usage")
        STOP = "stop", _("STOP: opt out of promotional SMS")
        START = "start", _("START: opt back in")
        HELP = "help", _("HELP")
        RECHARGE = "recharge", _("RECHARGE <PIN>: redeem a card")
        TICKET = "ticket", _("Open a support ticket")
        REPLY = "reply", _("Fixed reply")

    class Match(models.TextChoices):
        COMMAND = "command", _("First word")
        CONTAINS = "contains", _("Contains")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_keywords")
    line = models.ForeignKey(SenderId, null=True, blank=True, on_delete=models.CASCADE, related_name="keywords")
    keyword = models.CharField(max_length=40)
    aliases = models.JSONField(default=list, blank=True)
    match = models.CharField(max_length=10, choices=Match.choices, default=Match.COMMAND)
    action = models.CharField(max_length=10, choices=Action.choices)
    reply_body = models.TextField(blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=100)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "line", "keyword"], name="sms_keyword_unique",
                                               nulls_distinct=False)]

    def __str__(self) -> str:
        return self.keyword


class InboundMessage(models.Model):
    """An incoming SMS (mobile-originated) on a line, as stored for the inbox.

    ``tenant`` / ``line`` are empty when the destination matched no line. ``status``:
    new (not yet handled), handled (a rule acted; ``reply`` is the answer sent),
    ignored (no rule and no reply configured), failed (``error`` says why).
    """

    class Status(models.TextChoices):
        NEW = "new", _("New")
        HANDLED = "handled", _("Handled")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    tenant = models.ForeignKey("accounts.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="sms_inbox")
    line = models.ForeignKey(SenderId, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbox")
    provider = models.CharField(max_length=60)
    from_number = models.CharField(max_length=21)
    to_number = models.CharField(max_length=21)
    text = models.TextField()
    parts = models.PositiveSmallIntegerField(default=1)
    complete = models.BooleanField(default=True)
    received_at = models.DateTimeField()
    customer = models.ForeignKey("subscribers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    rule = models.ForeignKey(KeywordRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEW, db_index=True)
    reply = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.CharField(max_length=255, blank=True, default="")
    data = models.JSONField(default=dict, blank=True, help_text=_("What the rule did (ticket id, card, ...)."))
    read_at = models.DateTimeField(null=True, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-received_at"], name="sms_inbox_recent")]

    def __str__(self) -> str:
        return f"from {self.from_number}: {self.text[:30]}"


# -- inbox actions and the delivery-status webhook (added by the inbox/API work) -----------


class SupportTicket(models.Model):
    """A support request, opened by a keyword rule from an incoming SMS (or by staff).

    Minimal on purpose: who asked (customer and/or number), what they wrote, where it
    came from and whether it is open; the helpdesk proper is a later module."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="support_tickets")
    customer = models.ForeignKey("subscribers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    number = models.CharField(max_length=21, blank=True, default="")
    subject = models.CharField(max_length=160)
    body = models.TextField()
    source = models.CharField(max_length=10, default="sms")
    inbound = models.OneToOneField(InboundMessage, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="ticket")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisibleQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"


class WebhookEndpoint(models.Model):
    """Where a tenant wants delivery-status callbacks: every message that reaches a final
    state is POSTed there as JSON, signed ``X-ISP-Signature: sha256=<hex HMAC of the body
    with secret>``, retried with exponential backoff (``notifications.webhooks``)."""

    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="sms_webhook")
    url = models.URLField(max_length=500)
    secret = EncryptedCharField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    max_attempts = models.PositiveSmallIntegerField(default=8)
    backoff_seconds = models.PositiveIntegerField(default=30, help_text=_("First retry after this; doubles each time."))
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One status callback owed for one message state: pending until the receiver answers
    2xx (delivered) or ``max_attempts`` are used up (failed). Unique per (message, state),
    so a scan that runs twice queues nothing twice."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=12)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=255, blank=True, default="")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["message", "state"], name="sms_webhook_once_per_state")]
        indexes = [models.Index(fields=["next_attempt_at"], name="sms_webhook_due",
                                condition=Q(status="pending"))]

    def __str__(self) -> str:
        return f"webhook {self.message_id} {self.state} ({self.status})"
