from django.contrib import admin

from .models import AuditEvent, JobRun


class SuperAdminReadOnly(admin.ModelAdmin):
    """Platform-wide records: the super admin reads them; nobody edits them."""

    def has_module_permission(self, request):
        return getattr(request.user, "role", None) == "super_admin"

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(SuperAdminReadOnly):
    list_display = ["created_at", "tenant_id", "actor", "action", "object_type", "object_id"]
    list_filter = ["action"]


@admin.register(JobRun)
class JobRunAdmin(SuperAdminReadOnly):
    list_display = ["started_at", "kind", "key", "status", "progress", "total", "finished_at"]
    list_filter = ["kind", "status"]
