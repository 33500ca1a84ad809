from rest_framework import serializers

from ..models import LedgerEntry, Wallet


class WalletSerializer(serializers.ModelSerializer):
    available = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = Wallet
        fields = ["id", "tenant", "node", "customer", "system_code", "balance", "credit_limit", "available",
                  "unbounded", "currency", "updated_at"]
        read_only_fields = fields


class LedgerEntrySerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="transaction.kind", read_only=True)
    memo = serializers.CharField(source="transaction.memo", read_only=True)
    reference = serializers.CharField(source="transaction.reference", read_only=True)
    idempotency_key = serializers.CharField(source="transaction.idempotency_key", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "transaction", "wallet", "amount", "balance_after", "kind", "memo", "reference",
                  "idempotency_key", "created_at"]
        read_only_fields = fields
