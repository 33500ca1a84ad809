from django.db import transaction
from rest_framework import serializers

from ispcore.api.base import ServiceSerializer

from .. import services
from ..models import CUSTOMER_TYPES, Package, PriceListEntry


class PackageSerializer(ServiceSerializer):
    customer_types = serializers.MultipleChoiceField(choices=CUSTOMER_TYPES)
    rate_limit = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)

    class Meta:
        model = Package
        fields = ["id", "tenant", "name", "customer_types", "billing_mode", "price", "validity", "upload_kbps",
                  "download_kbps", "burst_upload_kbps", "burst_download_kbps", "burst_threshold_upload_kbps",
                  "burst_threshold_download_kbps", "burst_time_seconds", "priority", "rate_limit",
                  "data_quota_mb", "time_quota_minutes", "is_active", "created_at"]
        read_only_fields = ["tenant", "created_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["customer_types"] = instance.customer_types
        return data

    def service_create(self, data, *, actor):
        tenant = self.acting_tenant()
        return services.create_package(actor=actor, tenant=tenant, customer_types=sorted(data.pop("customer_types")), **data)

    def service_update(self, instance, data, *, actor):
        types = data.pop("customer_types", None)
        return services.update_package(instance, actor=actor, customer_types=sorted(types) if types else None, **data)


class PriceListEntrySerializer(ServiceSerializer):
    node_price = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    customer_price = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    commission = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    minute_price = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True,
        help_text="Per-minute reseller billing: what this node pays per active customer-minute (null: not billed).")

    class Meta:
        model = PriceListEntry
        fields = ["id", "node", "package", "node_price", "customer_price", "commission", "minute_price", "is_active"]
        read_only_fields = ["is_active"]
        validators = []  # (node, package) uniqueness is an upsert in the service

    def validate_node(self, node):
        user = self.context["request"].user
        # A reseller sets its children's prices, never its own.
        if user.node_id == node.id and user.role != "admin" and user.role != "super_admin":
            raise serializers.ValidationError("You cannot set your own purchase price.")
        return node

    def service_create(self, data, *, actor):
        minute = data.pop("minute_price", None)
        with transaction.atomic():  # the price and its per-minute rate, or neither
            entry = services.set_price(actor=actor, **data)
            if minute is not None:
                entry = services.set_minute_price(actor=actor, node=entry.node, package=entry.package,
                                                  minute_price=minute)
        return entry

    def service_update(self, instance, data, *, actor):
        with transaction.atomic():
            entry = instance
            if {"node", "package", "node_price", "customer_price"} & set(data):
                entry = services.set_price(
                    actor=actor, node=data.get("node", instance.node), package=data.get("package", instance.package),
                    node_price=data.get("node_price", instance.node_price),
                    customer_price=data.get("customer_price", instance.customer_price),
                )
            if "minute_price" in data:
                entry = services.set_minute_price(actor=actor, node=entry.node, package=entry.package,
                                                  minute_price=data["minute_price"])
        return entry
