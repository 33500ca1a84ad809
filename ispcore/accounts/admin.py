from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .admin_base import ScopedAdmin
from .models import AccountNode, Tenant, User


@admin.register(Tenant)
class TenantAdmin(ScopedAdmin):
    tenant_field = None
    list_display = ["name", "slug", "timezone", "currency", "vat_percent", "is_active"]
    search_fields = ["name", "slug"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        from .services import create_tenant

        created = create_tenant(actor=request.user, name=obj.name, slug=obj.slug, timezone=obj.timezone,
                                currency=obj.currency, vat_percent=obj.vat_percent, phone_region=obj.phone_region)
        obj.pk = created.pk


@admin.register(AccountNode)
class AccountNodeAdmin(ScopedAdmin):
    list_display = ["name", "kind", "parent", "billing_mode", "is_active", "path"]
    list_filter = ["kind", "billing_mode", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["path", "depth"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        from .services import create_node

        created = create_node(actor=request.user, parent=obj.parent, kind=obj.kind, name=obj.name,
                              billing_mode=obj.billing_mode, mobile=obj.mobile)
        obj.pk = created.pk


@admin.register(User)
class UserAdmin(ScopedAdmin, BaseUserAdmin):
    list_display = ["username", "role", "tenant", "node", "is_active"]
    list_filter = ["role", "is_active"]
    fieldsets = BaseUserAdmin.fieldsets + (("Role", {"fields": ("role", "tenant", "node", "permissions", "mobile")}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Role", {"fields": ("role", "tenant", "node", "permissions")}),)

    def get_exclude(self, request, obj=None):
        return []

    def get_fieldsets(self, request, obj=None):
        sets = super().get_fieldsets(request, obj)
        if request.user.role != "super_admin":
            # Tenant admins cannot grant Django superuser/staff flags or pick another tenant.
            cleaned = []
            for name, opts in sets:
                fields = tuple(f for f in opts["fields"] if f not in {"is_superuser", "user_permissions", "groups", "tenant"})
                cleaned.append((name, {**opts, "fields": fields}))
            return cleaned
        return sets

    def save_model(self, request, obj, form, change):
        from .services import _check_user_fields

        if request.user.role != "super_admin":
            obj.tenant_id = request.user.tenant_id
        _check_user_fields(request.user, tenant=obj.tenant, role=obj.role, node=obj.node, permissions=obj.permissions)
        obj.is_staff = obj.role in ("super_admin", "admin")
        obj.is_superuser = obj.role == "super_admin"
        super().save_model(request, obj, form, change)
