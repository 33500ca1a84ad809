"""Per-router MikroTik settings and the record of every sync run.

Both hang off ``subscribers.Nas`` and are reached only through it, so who may see
them is decided by the NAS's own visibility rule (tenant admin, managers with the
``manage_nas`` permission): there is no separate rule to keep in step.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RouterSettings(models.Model):
    """How the system manages one MikroTik beyond its API credentials (kept on the Nas).

    Guarantees: a NAS without a row behaves as the defaults say (RADIUS mode, the
    ``MIKROTIK_RADIUS_ADDRESS`` setting as the RADIUS server address, every
    customer of the tenant); see :func:`mikrotik.sync.router_settings`.
    """

    class AccessMode(models.TextChoices):
        RADIUS = "radius", _("RADIUS (the router asks our RADIUS server)")
        API_ONLY = "api_only", _("API only (PPP secrets and hotspot users pushed to the router)")

    nas = models.OneToOneField("subscribers.Nas", on_delete=models.CASCADE, primary_key=True,
                               related_name="mikrotik_settings")
    access_mode = models.CharField(max_length=10, choices=AccessMode.choices, default=AccessMode.RADIUS)
    radius_address = models.GenericIPAddressField(
        null=True, blank=True,
        help_text=_("Address of our RADIUS server as this router reaches it. Empty: the MIKROTIK_RADIUS_ADDRESS "
                    "setting; if that is empty too, /radius on the router is not managed."),
    )
    zones = models.ManyToManyField(
        "subscribers.Zone", blank=True, related_name="+",
        help_text=_("Customers this router serves (secrets, queues, expired list): those of these zones and "
                    "their areas. Empty: every customer of the tenant."),
    )

    class Meta:
        verbose_name = "MikroTik settings"
        verbose_name_plural = "MikroTik settings"

    def __str__(self) -> str:
        return f"MikroTik settings of NAS {self.nas_id}"


class RouterSyncRun(models.Model):
    """One sync (or dry run) of one router: when, why, how it ended, what changed.

    Written by :func:`mikrotik.sync.sync_router`: created ``running`` before the
    router is contacted, finished ``succeeded`` (every change applied), ``failed``
    (an item refused or clashing: ``errors`` lists each; or the sync could not
    finish: ``error`` says why in words an operator can act on). ``changes`` holds
    every change of the last attempt (menu, action, name, fields, old values)."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", _("Manual")
        BEAT = "beat", _("Scheduled")
        REPAIR = "repair", _("Repair drift")
        DRIFT = "drift", _("Drift report (dry run)")
        CUSTOMER = "customer", _("Customer status change")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    nas = models.ForeignKey("subscribers.Nas", on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    changes = models.JSONField(default=list, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text=_("Items the router refused or that clashed."))
    error = models.TextField(blank=True, default="", help_text=_("Why the sync could not finish, if it did not."))
    notes = models.JSONField(default=list, blank=True, help_text=_("Menus skipped because the router lacks them."))

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["nas", "-started_at"], name="mikrotik_run_nas_started")]

    def __str__(self) -> str:
        return f"sync of NAS {self.nas_id} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def summary(self) -> str:
        """One line for the router's page: counts, or the error that stopped it."""
        if self.status == self.Status.RUNNING:
            return "running"
        counts = f"+{self.added} ~{self.updated} -{self.removed} ={self.unchanged}"
        if self.dry_run:
            counts = f"would add {self.added}, set {self.updated}, remove {self.removed}; {self.unchanged} in sync"
        if self.error:
            return f"{self.status}: {self.error}"
        if self.errors:
            first = self.errors[0]
            return (f"{self.status} ({counts}); {len(self.errors)} item error(s), first: "
                    f"{first.get('menu', '')} {first.get('name', '')}: {first.get('message', '')}")
        skipped = f"; skipped: {', '.join(self.notes)}" if self.notes else ""
        kind = "dry run, " if self.dry_run else ""
        return f"{kind}{self.status} ({counts}){skipped}"
