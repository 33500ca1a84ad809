"""Read-only admin pages: cards change state only through the services (API, command)."""
from django.contrib import admin

from ispcore.accounts.admin_base import ReadOnlyScopedAdmin

from .models import CardBatch, RechargeCard


@admin.register(CardBatch)
class CardBatchAdmin(ReadOnlyScopedAdmin):
    list_display = ["id", "issuer", "kind", "package", "face_value", "count", "status", "distributor", "valid_until",
                    "downloaded_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["issuer", "package", "distributor"]


@admin.register(RechargeCard)
class RechargeCardAdmin(ReadOnlyScopedAdmin):
    list_display = ["serial", "batch", "status", "used_by", "used_at"]
    list_filter = ["status"]
    search_fields = ["serial"]
    exclude = ["pin_hash"]
    list_select_related = ["batch", "used_by"]
