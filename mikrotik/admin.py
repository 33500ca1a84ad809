"""The router's admin page gains its MikroTik side: settings, last sync status and error,
recent sync runs, and a "repair drift" action.

The Nas admin of ``subscribers`` is re-registered here as a subclass, so the
subscribers app stays unaware of MikroTik (mikrotik depends on subscribers,
never the reverse). Visibility and write rights are the Nas's own.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.utils.html import format_html, format_html_join

from ispcore.accounts.policy import can_write
from ispcore.subscribers.admin import NasAdmin
from ispcore.subscribers.models import Nas, Zone

from .models import RouterSettings, RouterSyncRun
from .services import queue_sync

RECENT_RUNS = 10
_STATUS_COLOURS = {"succeeded": "#1a7f37", "failed": "#cf222e", "running": "#9a6700"}


def _may_change_nas(request) -> bool:
    return can_write(request.user, "subscribers.nas", "change")


class RouterSettingsInline(admin.StackedInline):
    """Access mode, RADIUS server address and zones; editable by whoever may change the router."""

    model = RouterSettings
    can_delete = False
    fields = ["access_mode", "radius_address", "zones"]
    filter_horizontal = ["zones"]

    def has_view_permission(self, request, obj=None):
        return True  # the parent admin already decided the user may see this router

    def has_add_permission(self, request, obj=None):
        return _may_change_nas(request)

    def has_change_permission(self, request, obj=None):
        return _may_change_nas(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "zones":
            kwargs["queryset"] = Zone.objects.visible_to(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def _status_badge(status: str | None, text: str) -> str:
    if not status:
        return "never synced"
    return format_html('<strong style="color:{}">{}</strong>', _STATUS_COLOURS.get(status, "inherit"), text)


class RouterNasAdmin(NasAdmin):
    inlines = [RouterSettingsInline]
    readonly_fields = ["last_sync", "recent_syncs"]
    list_display = [*NasAdmin.list_display, "last_sync_status"]
    actions = ["repair_drift"]

    def get_queryset(self, request):
        latest = RouterSyncRun.objects.filter(nas_id=OuterRef("pk"), dry_run=False).order_by("-started_at", "-id")
        return super().get_queryset(request).annotate(
            _last_status=Subquery(latest.values("status")[:1]), _last_error=Subquery(latest.values("error")[:1]),
        )

    @admin.display(description="Last sync")
    def last_sync_status(self, obj: Nas) -> str:
        status = getattr(obj, "_last_status", None)
        error = getattr(obj, "_last_error", "") or ""
        return _status_badge(status, f"{status}: {error[:80]}" if error else (status or ""))

    @admin.display(description="Last sync")
    def last_sync(self, obj: Nas) -> str:
        run = obj.sync_runs.filter(dry_run=False).order_by("-started_at", "-id").first() if obj.pk else None
        if run is None:
            return "never synced"
        errors = format_html_join("", "<li>{} {} ({}): {}</li>", (
            (e.get("menu", ""), e.get("name", ""), e.get("action", ""), e.get("message", "")) for e in run.errors))
        notes = format_html_join("", "<li>{}</li>", ((note,) for note in run.notes))
        return format_html("{} at {} ({}){}{}{}", _status_badge(run.status, run.status),
                           f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}", run.get_trigger_display(),
                           format_html('<p style="color:#cf222e">{}</p>', run.error) if run.error else "",
                           format_html("<ul>{}</ul>", errors) if run.errors else "",
                           format_html("<ul>{}</ul>", notes) if run.notes else "")

    @admin.display(description="Recent syncs")
    def recent_syncs(self, obj: Nas) -> str:
        runs = list(obj.sync_runs.order_by("-started_at", "-id")[:RECENT_RUNS]) if obj.pk else []
        if not runs:
            return "-"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (f"{r.started_at:%Y-%m-%d %H:%M}", r.get_trigger_display(), r.attempts, r.summary) for r in runs))
        return format_html("<table><tr><th>Started</th><th>Trigger</th><th>Attempts</th><th>Outcome</th></tr>{}"
                           "</table>", rows)

    @admin.action(description="Repair drift: queue a sync of the selected routers")
    def repair_drift(self, request, queryset):
        if not _may_change_nas(request):
            self.message_user(request, "You may not change routers.", messages.ERROR)
            return
        routers = list(queryset.filter(nas_type=Nas.NasType.MIKROTIK).exclude(api_username=""))
        for nas in routers:
            queue_sync(nas, trigger=RouterSyncRun.Trigger.REPAIR, actor=request.user)
        skipped = queryset.count() - len(routers)
        self.message_user(request, f"Queued a sync of {len(routers)} router(s)"
                          + (f"; {skipped} skipped (not a MikroTik or no API user)." if skipped else "."))


admin.site.unregister(Nas)
admin.site.register(Nas, RouterNasAdmin)
