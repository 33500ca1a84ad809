from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from ispcore.api.base import VisibleModelViewSet

from ..models import AccountNode, Tenant, User
from .serializers import MeSerializer, NodeSerializer, TenantSerializer, UserSerializer


class TenantViewSet(VisibleModelViewSet):
    """ISPs on the platform: the super admin manages them, everyone else reads their own."""

    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    filterset_fields = ["is_active"]
    search_fields = ["name", "slug"]
    http_method_names = ["get", "post", "patch", "head", "options"]


class NodeFilter(filters.FilterSet):
    within = filters.NumberFilter(method="filter_within", label="Subtree of node id")

    class Meta:
        model = AccountNode
        fields = ["kind", "parent", "is_active", "billing_mode"]

    def filter_within(self, qs, name, value):
        base = AccountNode.objects.visible_to(self.request.user).filter(pk=value).first()
        return qs.filter(path__startswith=base.path) if base else qs.none()


class TopUpSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    method = serializers.ChoiceField(choices=["cash", "adjustment", "transfer"], default="cash")
    reference = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    idempotency_key = serializers.CharField(max_length=150)


class TopUpResultSerializer(serializers.Serializer):
    transaction = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    balance = serializers.DecimalField(max_digits=14, decimal_places=2)
    resumed_customers = serializers.IntegerField()
    replayed = serializers.BooleanField()


class NodeViewSet(VisibleModelViewSet):
    """The selling tree: resellers, sub-resellers and card distributors under the ISP."""

    queryset = AccountNode.objects.all()
    serializer_class = NodeSerializer
    filterset_class = NodeFilter
    search_fields = ["name", "mobile"]
    select_related = ("wallet",)
    http_method_names = ["get", "post", "patch", "head", "options"]

    @extend_schema(request=TopUpSerializer, responses=TopUpResultSerializer)
    @action(detail=True, methods=["post"], url_path="top-up")
    def top_up(self, request, pk=None):
        """Credit this node's balance (cash or adjustment by the ISP, or a transfer from the parent
        reseller's balance); idempotent by key. Customers suspended because this balance ran out
        are reactivated."""
        from ispcore.billing.models import Wallet
        from ispcore.billing.sales import top_up_node

        node = self.get_object()
        data = TopUpSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        txn = top_up_node(node, data.validated_data["amount"], actor=request.user,
                          method=data.validated_data["method"], reference=data.validated_data["reference"],
                          idempotency_key=f"api:{request.user.pk}:{data.validated_data['idempotency_key']}")
        wallet = Wallet.objects.get(node=node)
        return Response(TopUpResultSerializer({
            "transaction": txn.pk, "amount": data.validated_data["amount"], "balance": wallet.balance,
            "resumed_customers": getattr(txn, "resumed", 0), "replayed": txn.replayed,
        }).data, status=200 if txn.replayed else 201)


class UserViewSet(VisibleModelViewSet):
    """Panel logins, each with one role attached to a node of the caller's subtree."""

    queryset = User.objects.all()
    serializer_class = UserSerializer
    filterset_fields = ["role", "node", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def service_delete(self, instance, *, actor):
        from .. import services

        services.update_user(instance, actor=actor, is_active=False)


@extend_schema(responses=MeSerializer)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def me(request):
    """Who the caller is: role, tenant, node and (for a customer) the customer id."""
    return Response(MeSerializer(request.user).data)
