from rest_framework import serializers

from ispcore.subscribers.models import Nas

from ..models import RouterSyncRun


class RouterSyncRunSerializer(serializers.ModelSerializer):
    """One sync run; passwords and shared secrets in ``changes`` are already masked."""

    summary = serializers.CharField(read_only=True)

    class Meta:
        model = RouterSyncRun
        fields = ["id", "nas", "trigger", "dry_run", "status", "started_at", "finished_at", "attempts", "added",
                  "updated", "removed", "unchanged", "errors", "error", "notes", "summary", "changes"]
        read_only_fields = fields


class RouterSerializer(serializers.ModelSerializer):
    """A router with its MikroTik side: API settings and the last real (not dry-run) sync's outcome."""

    access_mode = serializers.SerializerMethodField()
    last_sync = serializers.SerializerMethodField()

    class Meta:
        model = Nas
        fields = ["id", "name", "ip_address", "nas_type", "is_active", "api_username", "api_port", "api_use_ssl",
                  "api_verify_tls", "access_mode", "last_sync"]
        read_only_fields = fields

    def get_access_mode(self, obj: Nas) -> str:
        return getattr(obj, "_access_mode", None) or "radius"

    def get_last_sync(self, obj: Nas) -> dict | None:
        run = getattr(obj, "_last_run", None)
        if run is None:
            return None
        return {"id": run.pk, "status": run.status, "trigger": run.trigger, "started_at": run.started_at,
                "finished_at": run.finished_at, "error": run.error, "item_errors": len(run.errors),
                "summary": run.summary}
