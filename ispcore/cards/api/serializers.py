"""Card API serializers: they validate input and call the card services; none writes a model."""
from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from ispcore.accounts.models import AccountNode
from ispcore.api.base import ServiceSerializer, VisibleRelatedFieldsMixin
from ispcore.subscribers.models import Customer

from .. import services
from ..models import CardBatch, RechargeCard
from ..pins import DEFAULT_PIN_LENGTH, MIN_PIN_LENGTH


class CardBatchSerializer(ServiceSerializer):
    """A batch as listed; on POST it generates one (the issuer defaults to the caller's node)."""

    issuer = serializers.PrimaryKeyRelatedField(queryset=AccountNode.objects.all(), required=False)
    validity_days = serializers.IntegerField(write_only=True, required=False, min_value=1, max_value=3650)
    pin_length = serializers.IntegerField(write_only=True, required=False, min_value=MIN_PIN_LENGTH, max_value=20,
                                          default=DEFAULT_PIN_LENGTH)
    face_value = serializers.DecimalField(max_digits=14, decimal_places=2, required=False)
    valid_until = serializers.DateTimeField(required=False)
    count = serializers.IntegerField(min_value=1, max_value=services.MAX_BATCH_SIZE)
    download_available = serializers.SerializerMethodField()

    class Meta:
        model = CardBatch
        fields = [
            "id", "issuer", "distributor", "kind", "package", "face_value", "count", "valid_until", "validity_days",
            "pin_length", "status", "commission", "sale_price", "sold_count", "memo", "created_at", "issued_at",
            "sold_at", "downloaded_at", "download_available",
        ]
        read_only_fields = ["distributor", "kind", "status", "commission", "sale_price", "sold_count", "created_at",
                            "issued_at", "sold_at", "downloaded_at"]

    def get_download_available(self, obj) -> bool:
        return obj.downloaded_at is None and obj.status != CardBatch.Status.VOID

    def service_create(self, data, *, actor):
        issuer = data.get("issuer") or actor.node
        if issuer is None:
            raise serializers.ValidationError({"issuer": "Name the node that issues the cards."})
        return services.generate_batch(
            actor=actor, issuer=issuer, count=data["count"], face_value=data.get("face_value"),
            package=data.get("package"), valid_until=data.get("valid_until"),
            validity_days=data.get("validity_days"), pin_length=data.get("pin_length", DEFAULT_PIN_LENGTH),
            memo=data.get("memo", ""),
        )


class IssueSerializer(VisibleRelatedFieldsMixin, serializers.Serializer):
    distributor = serializers.PrimaryKeyRelatedField(queryset=AccountNode.objects.all())


class SellSerializer(VisibleRelatedFieldsMixin, serializers.Serializer):
    distributor = serializers.PrimaryKeyRelatedField(queryset=AccountNode.objects.all(), required=False)
    commission_percent = serializers.DecimalField(max_digits=5, decimal_places=2, min_value=Decimal("0"),
                                                  max_value=Decimal("99.99"), default=Decimal("0"))


class VoidSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class RechargeCardSerializer(serializers.ModelSerializer):
    """A card without its PIN (the PIN is not stored; its hash is never shown)."""

    class Meta:
        model = RechargeCard
        fields = ["id", "batch", "serial", "status", "used_by", "used_at", "voided_at"]
        read_only_fields = fields


class RedeemSerializer(VisibleRelatedFieldsMixin, serializers.Serializer):
    """A customer redeems for itself; a seller may redeem for one of its customers."""

    pin = serializers.CharField(max_length=40, trim_whitespace=True)
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), required=False)


class RedeemResultSerializer(serializers.Serializer):
    """What a redemption did: the card's serial, the amount credited to the customer wallet,
    the ledger transaction, and for a package card whether activation is still pending."""

    card = serializers.CharField()
    kind = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    transaction = serializers.IntegerField()
    package = serializers.IntegerField(allow_null=True)
    activation_pending = serializers.BooleanField()
