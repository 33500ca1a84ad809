"""Card endpoints. Every list and detail starts from `visible_to(user)`; every write is a
service call; the clear PINs leave the server only through the one-time download."""
from __future__ import annotations

from django.db.models import Count
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response

from ispcore.accounts.policy import can_write
from ispcore.accounts.roles import Role
from ispcore.api.base import VisibleModelViewSet, VisibleReadOnlyViewSet

from .. import services
from ..models import CardBatch, RechargeCard
from .serializers import (
    CardBatchSerializer,
    IssueSerializer,
    RechargeCardSerializer,
    RedeemResultSerializer,
    RedeemSerializer,
    SellSerializer,
    VoidSerializer,
)

# view action -> write-policy action
_POLICY = {"create": "create", "issue": "change", "sell": "change", "void": "change", "download": "change"}


class CardWritePolicy(permissions.BasePermission):
    """Reads need a login; each write action needs the policy's grant for the viewset's model."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if request.method.lower() not in view.http_method_names:
            return True  # answered 405 by the view, for everyone
        needed = _POLICY.get(getattr(view, "action", None) or "", "change")
        return can_write(request.user, view.queryset.model._meta.label_lower, needed)


class CardBatchViewSet(VisibleModelViewSet):
    """Batches the caller may see. POST generates; actions issue, sell, void, download (once)."""

    queryset = CardBatch.objects.all()
    serializer_class = CardBatchSerializer
    permission_classes = [CardWritePolicy]
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["status", "kind", "issuer", "distributor", "package"]
    select_related = ("issuer", "distributor", "package")

    def _run(self, request, serializer_class, call):
        batch = self.get_object()
        serializer = serializer_class(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        result = call(batch, serializer.validated_data)
        return Response(CardBatchSerializer(result, context=self.get_serializer_context()).data)

    @extend_schema(request=IssueSerializer, responses=CardBatchSerializer)
    @action(detail=True, methods=["post"])
    def issue(self, request, pk=None):
        return self._run(request, IssueSerializer, lambda b, d: services.issue_batch(
            b, distributor=d["distributor"], actor=request.user))

    @extend_schema(request=SellSerializer, responses=CardBatchSerializer)
    @action(detail=True, methods=["post"])
    def sell(self, request, pk=None):
        return self._run(request, SellSerializer, lambda b, d: services.sell_batch_to_distributor(
            b, distributor=d.get("distributor"), commission_percent=d["commission_percent"], actor=request.user))

    @extend_schema(request=VoidSerializer, responses=CardBatchSerializer)
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        return self._run(request, VoidSerializer, lambda b, d: services.void_batch(
            b, actor=request.user, reason=d["reason"]))

    @extend_schema(request=None, responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["post"])
    def download(self, request, pk=None):
        """The ZIP (PDF card sheet, CSV, XLSX) with the clear PINs; works once per batch."""
        files = services.download_batch(self.get_object(), actor=request.user)
        response = HttpResponse(files.content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{files.filename}"'
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def summary(self, request, pk=None):
        """How many cards of the batch are in each state."""
        batch = self.get_object()
        counts = dict(batch.cards.values_list("status").annotate(n=Count("id")).order_by())
        return Response({"batch": batch.pk, "counts": counts})


class RechargeCardViewSet(VisibleReadOnlyViewSet):
    """Cards the caller may see (never their PINs); POST <id>/void/ cancels one."""

    queryset = RechargeCard.objects.all()
    serializer_class = RechargeCardSerializer
    filterset_fields = ["batch", "status", "serial"]
    lookup_value_regex = r"\d+"

    @extend_schema(request=VoidSerializer, responses=RechargeCardSerializer)
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        if not can_write(request.user, "cards.rechargecard", "change"):
            raise exceptions.PermissionDenied()
        card = self.get_object()
        data = VoidSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        card = services.void_card(card, actor=request.user, reason=data.validated_data["reason"])
        return Response(RechargeCardSerializer(card).data)


def _source(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is set by the client unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or "unknown"


@extend_schema(request=RedeemSerializer, responses=RedeemResultSerializer)
@api_view(["POST"])
@permission_classes([permissions.IsAuthenticated])
def redeem(request):
    """Redeem a card: a customer for itself; the admin, a reseller or sub-reseller for one
    of its customers (`customer`). 400 names the reason, 429 after too many wrong PINs."""
    serializer = RedeemSerializer(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    user = request.user
    if user.role == Role.CUSTOMER:
        customer = getattr(user, "customer_profile", None)
        if customer is None:
            raise exceptions.PermissionDenied()
    elif user.role in (Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER, Role.SUPER_ADMIN):
        customer = serializer.validated_data.get("customer")
        if customer is None:
            raise exceptions.ValidationError({"customer": ["Name the customer the card is for."]})
    else:
        raise exceptions.PermissionDenied()
    try:
        result = services.redeem_card(customer=customer, pin=serializer.validated_data["pin"], actor=user,
                                      source=_source(request))
    except services.CardRateLimited as exc:
        raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
    body = RedeemResultSerializer({
        "card": result.card.serial, "kind": result.card.batch.kind, "amount": result.amount,
        "transaction": result.transaction.pk, "package": result.card.batch.package_id,
        "activation_pending": result.activation_pending,
    }).data
    return Response(body, status=status.HTTP_200_OK)
