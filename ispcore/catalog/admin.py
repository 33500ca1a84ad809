from django.contrib import admin

from ispcore.accounts.admin_base import ScopedAdmin

from .models import Package, PriceListEntry


@admin.register(Package)
class PackageAdmin(ScopedAdmin):
    list_display = ["name", "billing_mode", "price", "validity", "rate_limit", "is_active"]
    list_filter = ["billing_mode", "is_active", "for_pppoe", "for_hotspot", "for_static", "for_other"]
    search_fields = ["name"]


@admin.register(PriceListEntry)
class PriceListEntryAdmin(ScopedAdmin):
    tenant_field = None
    list_display = ["node", "package", "node_price", "customer_price", "minute_price", "is_active"]
    list_select_related = ["node", "package"]
