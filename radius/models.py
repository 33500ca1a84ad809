"""What the RADIUS server records: accounting sessions, daily usage, the
authentication log and the Disconnect/CoA requests sent to routers."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AccountingSession(models.Model):
    """One network session as the NAS reported it.

    ``unique_id`` (MD5 of NAS id, Acct-Session-Id and User-Name) identifies the
    row, so a missing Start, a retransmitted Stop or an interim arriving late
    update the same row. Counters are 64-bit (Gigawords combined) and never
    go backwards; a closed session is never reopened or deleted.

    Indexes are few on purpose (every one is written per Start, and per
    Interim-Update unless the update is HOT): no single-column indexes that
    a composite one already leads with, no ``varchar_pattern_ops`` twin for
    ``unique_id`` (a constraint, not ``unique=True``), and no index on a
    column an Interim-Update changes (``updated_at``, counters), so interims
    are heap-only updates; the table keeps 15 % of each page free for them
    (fillfactor 85, migration 0002)."""

    tenant_id = models.BigIntegerField()
    nas = models.ForeignKey("subscribers.Nas", null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False)
    customer = models.ForeignKey(
        "subscribers.Customer", null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False,
        db_index=False,
    )
    unique_id = models.CharField(max_length=32)
    acct_session_id = models.CharField(max_length=253)
    username = models.CharField(max_length=253)
    nas_ip_address = models.GenericIPAddressField(null=True)
    nas_port_id = models.CharField(max_length=253, blank=True, default="")
    framed_ip_address = models.GenericIPAddressField(null=True)
    calling_station_id = models.CharField(max_length=64, blank=True, default="")
    called_station_id = models.CharField(max_length=253, blank=True, default="")
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    session_time = models.BigIntegerField(default=0)
    input_octets = models.BigIntegerField(default=0, help_text="From the user (upload).")
    output_octets = models.BigIntegerField(default=0, help_text="To the user (download).")
    input_packets = models.BigIntegerField(default=0)
    output_packets = models.BigIntegerField(default=0)
    interim_interval = models.PositiveIntegerField(default=0)
    terminate_cause = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["customer", "started_at"]),
            models.Index(fields=["tenant_id", "started_at"]),
            models.Index(fields=["nas"], condition=Q(stopped_at__isnull=True), name="radius_open_by_nas"),
            models.Index(fields=["customer"], condition=Q(stopped_at__isnull=True), name="radius_open_by_customer"),
        ]
        constraints = [models.UniqueConstraint(fields=["unique_id"], name="radius_session_unique_id")]

    def __str__(self) -> str:
        return f"{self.username} {self.acct_session_id}"

    @property
    def is_open(self) -> bool:
        return self.stopped_at is None


class DailyUsage(models.Model):
    """Bytes and seconds a customer used on one day (the day in the tenant's time
    zone), summed from accounting deltas; kept when sessions are archived.

    Every Interim-Update adds to one row here, so the table is kept for heap-only
    updates: no index on a column that changes, no customer index besides the
    unique (customer, day) one that leads with it, and half of each page left
    free (fillfactor 50, migration 0003)."""

    tenant_id = models.BigIntegerField(db_index=True)
    customer = models.ForeignKey(
        "subscribers.Customer", on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False,
    )
    day = models.DateField()
    input_octets = models.BigIntegerField(default=0)
    output_octets = models.BigIntegerField(default=0)
    session_time = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["customer", "day"], name="radius_daily_usage_unique")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.day}"


class AuthLog(models.Model):
    """One authentication decision with its reason. Bounded: the oldest rows are
    trimmed by :func:`radius.services.trim_auth_log`.

    Written at the rate of Access-Requests (tens of thousands a second in a reconnect
    storm), so it carries only the indexes its readers need: the primary key (rows are
    written in time order, so ``-id`` is newest first, and trimming goes by id) and
    (tenant, username, time) for one customer's attempts. A separate ``created_at``
    index cost PostgreSQL a fifth to a third of the COPY's time and served no query."""

    tenant_id = models.BigIntegerField(null=True)  # led by the (tenant_id, username, created_at) index
    nas_ip_address = models.GenericIPAddressField(null=True)
    username = models.CharField(max_length=253)
    customer_id = models.BigIntegerField(null=True)
    accepted = models.BooleanField()
    reason = models.CharField(max_length=32)
    method = models.CharField(max_length=16, blank=True, default="")
    calling_station_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant_id", "username", "created_at"])]

    def __str__(self) -> str:
        return f"{self.username} {'accept' if self.accepted else 'reject'} ({self.reason})"


class DynamicAuthRequest(models.Model):
    """A Disconnect-Request or CoA-Request sent to a NAS and how it ended."""

    class Kind(models.TextChoices):
        DISCONNECT = "disconnect"
        COA = "coa"

    class Result(models.TextChoices):
        ACK = "ack"
        NAK = "nak"
        TIMEOUT = "timeout"
        ERROR = "error"

    tenant_id = models.BigIntegerField(db_index=True)
    nas = models.ForeignKey("subscribers.Nas", null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False)
    customer = models.ForeignKey(
        "subscribers.Customer", null=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    session = models.ForeignKey(AccountingSession, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=120, blank=True, default="")
    result = models.CharField(max_length=16, choices=Result.choices)
    error_cause = models.PositiveIntegerField(null=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.result}"
