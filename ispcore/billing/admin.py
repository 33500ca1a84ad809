from django.contrib import admin

from ispcore.accounts.admin_base import ReadOnlyScopedAdmin

from .models import LedgerEntry, Wallet


@admin.register(Wallet)
class WalletAdmin(ReadOnlyScopedAdmin):
    list_display = ["id", "owner_label", "balance", "credit_limit", "unbounded", "currency"]
    list_filter = ["system_code", "unbounded"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyScopedAdmin):
    tenant_field = None
    list_display = ["id", "transaction", "wallet", "amount", "balance_after", "created_at"]
    list_select_related = ["transaction", "wallet"]
