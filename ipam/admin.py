"""IPAM in the admin: read-only (writes go through the API and its services, which
take the pool locks and check every rule)."""
from django.contrib import admin

from ispcore.accounts.admin_base import ReadOnlyScopedAdmin

from .models import Assignment, Prefix, Reservation


@admin.register(Prefix)
class PrefixAdmin(ReadOnlyScopedAdmin):
    list_display = ["network", "role", "nas", "parent", "name", "delegated_prefixlen"]
    list_filter = ["role", "family"]
    search_fields = ["name", "description"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyScopedAdmin):
    list_display = ["network", "kind", "customer", "nas", "interface", "prefix", "since"]
    list_filter = ["kind"]
    search_fields = ["customer__username", "interface"]
    list_select_related = ["customer", "nas", "prefix"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyScopedAdmin):
    list_display = ["network", "kind", "nas", "description"]
    list_filter = ["kind"]
