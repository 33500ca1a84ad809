from django.utils.translation import gettext as _
from rest_framework import serializers

from ispcore.api.base import ServiceSerializer

from .. import services
from ..models import AccountNode, Tenant, User
from ..roles import ManagerPermission


class TenantSerializer(ServiceSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "timezone", "currency", "vat_percent", "phone_region", "sms_settings",
                  "is_active", "created_at"]
        read_only_fields = ["created_at"]

    def service_create(self, data, *, actor):
        data.pop("is_active", None)
        return services.create_tenant(actor=actor, **data)

    def service_update(self, instance, data, *, actor):
        return services.update_tenant(instance, actor=actor, **data)


class NodeSerializer(ServiceSerializer):
    credit_limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False, write_only=True)
    balance = serializers.DecimalField(source="wallet.balance", max_digits=14, decimal_places=2, read_only=True)
    parent = serializers.PrimaryKeyRelatedField(queryset=AccountNode.objects.all())

    class Meta:
        model = AccountNode
        fields = ["id", "tenant", "parent", "kind", "name", "path", "depth", "billing_mode", "credit_limit",
                  "balance", "mobile", "is_active", "created_at"]
        read_only_fields = ["tenant", "path", "depth", "created_at"]

    def validate(self, attrs):
        if self.instance is not None:
            for frozen in ("parent", "kind", "billing_mode", "credit_limit"):
                if frozen in attrs and getattr(self.instance, frozen, attrs[frozen]) != attrs[frozen]:
                    raise serializers.ValidationError({frozen: _("This field cannot be changed after creation.")})
                attrs.pop(frozen, None)
        return attrs

    def service_create(self, data, *, actor):
        return services.create_node(actor=actor, **data)

    def service_update(self, instance, data, *, actor):
        return services.update_node(instance, actor=actor, **data)


class UserSerializer(ServiceSerializer):
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=ManagerPermission.choices), required=False)

    class Meta:
        model = User
        fields = ["id", "username", "password", "role", "tenant", "node", "email", "first_name", "last_name",
                  "mobile", "permissions", "is_active", "last_login", "date_joined"]
        read_only_fields = ["tenant", "last_login", "date_joined"]

    def validate(self, attrs):
        if self.instance is None and not attrs.get("password"):
            raise serializers.ValidationError({"password": _("A password is required.")})
        if self.instance is not None:
            for frozen in ("username", "role", "node"):
                if frozen in attrs and getattr(self.instance, frozen) != attrs[frozen]:
                    raise serializers.ValidationError({frozen: _("This field cannot be changed after creation.")})
                attrs.pop(frozen, None)
        return attrs

    def service_create(self, data, *, actor):
        return services.create_user(actor=actor, **data)

    def service_update(self, instance, data, *, actor):
        return services.update_user(instance, actor=actor, **data)


class MeSerializer(serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(source="customer_profile", read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "role", "tenant", "node", "permissions", "customer"]
