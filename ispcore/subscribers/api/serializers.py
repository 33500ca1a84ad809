from rest_framework import serializers

from ispcore.api.base import ServiceSerializer

from .. import services
from ..models import Customer, Nas, Zone


class ZoneSerializer(ServiceSerializer):
    class Meta:
        model = Zone
        fields = ["id", "tenant", "parent", "name"]
        read_only_fields = ["tenant"]
        validators = []

    def service_create(self, data, *, actor):
        return services.create_zone(actor=actor, tenant=self.acting_tenant(), **data)

    def service_update(self, instance, data, *, actor):
        return services.update_zone(instance, actor=actor, **data)


class NasSerializer(ServiceSerializer):
    secret = serializers.CharField(write_only=True, min_length=6, max_length=128)
    api_password = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=128)

    class Meta:
        model = Nas
        fields = ["id", "tenant", "name", "ip_address", "secret", "nas_type", "require_message_authenticator",
                  "coa_port", "api_username", "api_password", "api_port", "api_use_ssl", "api_verify_tls",
                  "is_active", "created_at"]
        read_only_fields = ["tenant", "created_at"]

    def service_create(self, data, *, actor):
        return services.create_nas(actor=actor, tenant=self.acting_tenant(), **data)

    def service_update(self, instance, data, *, actor):
        return services.update_nas(instance, actor=actor, **data)


class CustomerSerializer(ServiceSerializer):
    password = serializers.CharField(write_only=True, required=False, min_length=4, max_length=128)
    balance = serializers.DecimalField(source="wallet.balance", max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "tenant", "node", "customer_type", "username", "password", "full_name", "mobile", "email",
                  "zone", "address", "status", "package", "expires_at", "simultaneous_use", "mac_address",
                  "static_ip", "balance", "created_at", "updated_at"]
        read_only_fields = ["tenant", "created_at", "updated_at"]
        validators = []  # username uniqueness per tenant is checked by the service, with the field named

    def service_create(self, data, *, actor):
        return services.create_customer(actor=actor, tenant=self.acting_tenant(), **data)

    def service_update(self, instance, data, *, actor):
        return services.update_customer(instance, actor=actor, **data)
