"""The admin's base class: the same visibility and write policy as the API."""
from __future__ import annotations

from django.contrib import admin

from ispcore.core import audit

from .policy import can_write
from .roles import Role

ADMIN_ROLES = {Role.SUPER_ADMIN, Role.ADMIN}


class ScopedAdmin(admin.ModelAdmin):
    """Tenant admins see and edit only their tenant; the super admin sees everything.
    Foreign-key choices are narrowed by the same `visible_to`."""

    tenant_field: str | None = "tenant"

    def _label(self) -> str:
        return self.model._meta.label_lower

    def get_queryset(self, request):
        return self.model.objects.visible_to(request.user)

    def has_module_permission(self, request):
        return getattr(request.user, "role", None) in ADMIN_ROLES and request.user.is_active

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return self.has_module_permission(request) and can_write(request.user, self._label(), "create")

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request) and can_write(request.user, self._label(), "change")

    def has_delete_permission(self, request, obj=None):
        return self.has_module_permission(request) and can_write(request.user, self._label(), "delete")

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if self.tenant_field and request.user.role != Role.SUPER_ADMIN:
            excluded.append(self.tenant_field)
        return excluded

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        manager = db_field.related_model._default_manager
        if hasattr(manager, "visible_to"):
            kwargs["queryset"] = manager.visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if self.tenant_field and not change and request.user.role != Role.SUPER_ADMIN:
            setattr(obj, f"{self.tenant_field}_id", request.user.tenant_id)
        super().save_model(request, obj, form, change)
        audit.record(f"{obj._meta.model_name}.{'update' if change else 'create'}.admin", obj, actor=request.user)


class ReadOnlyScopedAdmin(ScopedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
