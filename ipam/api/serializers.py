"""IPAM API serializers: they validate input and write only through `ipam.services`."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from ispcore.api.base import ServiceSerializer, VisibleRelatedFieldsMixin
from ispcore.subscribers.models import Customer, Nas

from .. import services
from ..fields import to_network
from ..models import Assignment, Prefix, Reservation


class NetworkField(serializers.CharField):
    """An IPv4/IPv6 network or address as text ('10.0.0.0/24', '10.0.0.5', '2001:db8::/48')."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if len(text) > 43:
            raise serializers.ValidationError("Enter a network such as 10.0.0.0/24 or 2001:db8::/48.")
        try:
            return to_network(text)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def to_representation(self, value):
        return str(value)


class PrefixSerializer(ServiceSerializer):
    network = NetworkField()
    gateway = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=43,
                                    help_text="Reserve this address as the pool's gateway.")
    assigned = serializers.SerializerMethodField(help_text="How many assignments come from this prefix.")

    class Meta:
        model = Prefix
        fields = ["id", "tenant", "network", "family", "role", "parent", "nas", "delegated_prefixlen", "name",
                  "description", "gateway", "assigned", "created_at"]
        read_only_fields = ["tenant", "family", "created_at"]
        validators = []  # uniqueness and overlap are the service's (with the reason named)

    def get_assigned(self, obj) -> int:
        counted = getattr(obj, "assigned", None)  # annotated by the view's queryset (lists: no extra query)
        return counted if counted is not None else obj.assignments.count()

    def service_create(self, data, *, actor):
        data["gateway"] = data.get("gateway") or None
        return services.create_prefix(actor=actor, tenant=self.acting_tenant(), **data)

    def service_update(self, instance, data, *, actor):
        data.pop("gateway", None)
        return services.update_prefix(instance, actor=actor, **data)


class ReservationSerializer(ServiceSerializer):
    network = NetworkField()

    class Meta:
        model = Reservation
        fields = ["id", "tenant", "network", "kind", "nas", "description", "created_at"]
        read_only_fields = ["tenant", "created_at"]
        validators = []

    def service_create(self, data, *, actor):
        return services.create_reservation(actor=actor, tenant=self.acting_tenant(), **data)

    def service_update(self, instance, data, *, actor):
        return services.update_reservation(instance, actor=actor, **data)


class AssignmentSerializer(ServiceSerializer):
    """Read: the assignment. Create: `kind` plus `customer` (customer kinds) or `nas`
    (interface); `address` to ask for a specific address/prefix, `prefix` to name the
    pool; otherwise the lowest free unit of the NAS's or tenant's pools."""

    network = NetworkField(read_only=True)
    address = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=43)
    prefix = serializers.PrimaryKeyRelatedField(queryset=Prefix.objects.all(), required=False, allow_null=True)
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), required=False, allow_null=True)
    nas = serializers.PrimaryKeyRelatedField(queryset=Nas.objects.all(), required=False, allow_null=True)
    customer_username = serializers.CharField(source="customer.username", read_only=True, default=None)

    class Meta:
        model = Assignment
        fields = ["id", "tenant", "prefix", "customer", "customer_username", "nas", "interface", "kind", "network",
                  "address", "since", "description"]
        read_only_fields = ["tenant", "since"]
        validators = []

    def service_create(self, data, *, actor):
        kind = data["kind"]
        address = data.get("address") or None
        if kind == Assignment.Kind.INTERFACE:
            if not data.get("nas"):
                raise serializers.ValidationError({"nas": ["An interface address needs the NAS."]})
            return services.assign_interface(data["nas"], data.get("prefix"), actor=actor, address=address,
                                             interface=data.get("interface", ""),
                                             description=data.get("description", ""))
        if not data.get("customer"):
            raise serializers.ValidationError({"customer": ["This kind of assignment needs the customer."]})
        return services.assign_customer_prefix(data["customer"], kind, actor=actor, prefix=data.get("prefix"),
                                               address=address, nas=data.get("nas"),
                                               description=data.get("description", ""))

    def service_update(self, instance, data, *, actor):  # pragma: no cover - the view allows no updates
        raise serializers.ValidationError("Assignments are released and re-assigned, not edited.")


class Ipv6RequestSerializer(VisibleRelatedFieldsMixin, serializers.Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all())
    nas = serializers.PrimaryKeyRelatedField(queryset=Nas.objects.all(), required=False, allow_null=True)
    link_pool = serializers.PrimaryKeyRelatedField(queryset=Prefix.objects.all(), required=False, allow_null=True)
    delegated_pool = serializers.PrimaryKeyRelatedField(queryset=Prefix.objects.all(), required=False,
                                                        allow_null=True)
    delegate = serializers.BooleanField(default=True)


class UtilisationSerializer(serializers.Serializer):
    prefix_id = serializers.IntegerField()
    network = serializers.CharField()
    role = serializers.CharField()
    unit_prefixlen = serializers.IntegerField()
    total = serializers.IntegerField()
    assigned = serializers.IntegerField()
    reserved = serializers.IntegerField()
    in_subprefixes = serializers.IntegerField()
    free = serializers.IntegerField()
    used_percent = serializers.FloatField()
    largest_free_block = serializers.CharField(allow_null=True)
    largest_free_units = serializers.IntegerField()


class ImportResultSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    valid = serializers.IntegerField()
    dry_run = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.DictField())
