"""IPAM endpoints. Every queryset starts from `visible_to(request.user)` (the base
viewsets); every write goes through `ipam.services`."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, parsers, status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ispcore.accounts.models import Tenant
from ispcore.accounts.policy import can_write
from ispcore.accounts.roles import Role
from ispcore.api.base import VisibleModelViewSet

from .. import selectors, services
from ..fields import to_network
from ..models import Assignment, Prefix, Reservation
from .serializers import (
    AssignmentSerializer,
    ImportResultSerializer,
    Ipv6RequestSerializer,
    PrefixSerializer,
    ReservationSerializer,
    UtilisationSerializer,
)


def _network_param(name: str, value: str):
    try:
        return to_network(value, strict=False)
    except DjangoValidationError as exc:
        raise exceptions.ValidationError({name: exc.messages}) from None


class NetworkFilterSet(filters.FilterSet):
    within = filters.CharFilter(method="filter_within", label="Inside this network, e.g. 10.0.0.0/16")
    contains = filters.CharFilter(method="filter_contains", label="Containing this address or network")

    def filter_within(self, qs, name, value):
        return qs.within(_network_param(name, value))

    def filter_contains(self, qs, name, value):
        return qs.containing(_network_param(name, value))


class PrefixFilter(NetworkFilterSet):
    nas = filters.NumberFilter(field_name="nas_id")
    parent = filters.NumberFilter(field_name="parent_id")
    top_level = filters.BooleanFilter(field_name="parent", lookup_expr="isnull")

    class Meta:
        model = Prefix
        fields = ["role", "family"]


class AssignmentFilter(NetworkFilterSet):
    customer = filters.NumberFilter(field_name="customer_id")
    nas = filters.NumberFilter(field_name="nas_id")
    prefix = filters.NumberFilter(field_name="prefix_id")

    class Meta:
        model = Assignment
        fields = ["kind"]


class ReservationFilter(NetworkFilterSet):
    nas = filters.NumberFilter(field_name="nas_id")

    class Meta:
        model = Reservation
        fields = ["kind"]


class CsvParser(parsers.BaseParser):
    """A raw `text/csv` request body, handed to the view as a string."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return {"csv": stream.read().decode("utf-8-sig")}


_IMPORT_PARSERS = [parsers.JSONParser, parsers.MultiPartParser, parsers.FormParser, CsvParser]


def _acting_tenant(request) -> Tenant:
    """The caller's tenant, or for the super admin the `?tenant=` id."""
    if request.user.tenant_id:
        return request.user.tenant
    raw = request.query_params.get("tenant", "")
    tenant = Tenant.objects.filter(pk=raw).first() if raw.isdigit() else None
    if tenant is None:
        raise exceptions.ValidationError({"tenant": ["Name the tenant (its id) with ?tenant=."]})
    return tenant


def _csv_text(request) -> str:
    upload = request.FILES.get("file")
    if upload is not None:
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise exceptions.ValidationError({"file": ["The file is not UTF-8 text."]}) from None
    text = request.data.get("csv") if hasattr(request.data, "get") else None
    if not text:
        raise exceptions.ValidationError({"file": ["Upload a CSV file as 'file', or send it as text/csv."]})
    return text


def _import_response(result: services.ImportResult) -> Response:
    body = result.as_dict()
    if not result.ok:
        message = f"{len(result.errors)} row(s) have errors; nothing was imported."
        return Response(
            {"error": {"status": 400, "code": "import_invalid", "message": message, "fields": {},
                       "rows": result.errors}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return Response(body, status=status.HTTP_200_OK if result.dry_run else status.HTTP_201_CREATED)


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


_IMPORT_PARAMS = [
    OpenApiParameter("dry_run", bool, description="Validate every row, write nothing."),
    OpenApiParameter("tenant", int, description="Super admin only: the tenant to import into."),
]


class PrefixViewSet(VisibleModelViewSet):
    """IPv4/IPv6 prefixes and pools of the ISP; `?within=10.0.0.0/16`, `?contains=10.0.0.5`."""

    queryset = Prefix.objects.all()
    serializer_class = PrefixSerializer
    filterset_class = PrefixFilter
    search_fields = ["name", "description"]
    ordering_fields = ["network", "created_at"]
    select_related = ("nas", "parent")
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        counts = (Assignment.objects.filter(prefix=OuterRef("pk")).order_by().values("prefix")
                  .annotate(n=Count("pk")).values("n"))
        return super().get_queryset().annotate(
            assigned=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))
        )

    def service_delete(self, instance, *, actor):
        services.delete_prefix(instance, actor=actor)

    @extend_schema(responses=UtilisationSerializer)
    @action(detail=True, methods=["get"])
    def utilisation(self, request, pk=None):
        """Used, free, percentage and largest free block of one prefix."""
        return Response(selectors.utilisation(self.get_object()).as_dict())

    @extend_schema(responses=UtilisationSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="utilisation")
    def utilisation_list(self, request):
        """Utilisation of every visible prefix (filters apply; paginated)."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([selectors.utilisation(p).as_dict() for p in page])

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The visible prefixes (filters apply) as CSV, in the import format."""
        return _csv_response(selectors.export_prefixes_csv(self.filter_queryset(self.get_queryset())), "prefixes.csv")

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string",
                                                                                             "format": "binary"}}},
                            "text/csv": str},
                   parameters=_IMPORT_PARAMS, responses=ImportResultSerializer)
    @action(detail=False, methods=["post"], url_path="import", parser_classes=_IMPORT_PARSERS)
    def import_csv(self, request):
        """Import prefixes from CSV; every bad row is reported and then nothing is written."""
        result = services.import_prefixes_csv(_csv_text(request), actor=request.user, tenant=_acting_tenant(request),
                                              dry_run=request.query_params.get("dry_run") in ("1", "true", "yes"))
        return _import_response(result)


class ReservationViewSet(VisibleModelViewSet):
    """Addresses never handed out: gateways, broadcast addresses, routers' own."""

    queryset = Reservation.objects.all()
    serializer_class = ReservationSerializer
    filterset_class = ReservationFilter
    search_fields = ["description"]
    select_related = ("nas",)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def service_delete(self, instance, *, actor):
        services.delete_reservation(instance, actor=actor)


class AssignmentViewSet(VisibleModelViewSet):
    """Addresses and prefixes held by customers and router interfaces. POST assigns,
    DELETE releases; `?within=`, `?contains=`, `?customer=`, `?kind=` filter."""

    queryset = Assignment.objects.all()
    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilter
    search_fields = ["customer__username", "interface", "description"]
    ordering_fields = ["network", "since"]
    select_related = ("customer", "nas", "prefix")
    http_method_names = ["get", "post", "delete", "head", "options"]

    def service_delete(self, instance, *, actor):
        services.release(instance, actor=actor)

    @extend_schema(request=Ipv6RequestSerializer, responses=AssignmentSerializer(many=True))
    @action(detail=False, methods=["post"])
    def ipv6(self, request):
        """Give a PPPoE customer a link /64 and a delegated /56 or /60 (idempotent)."""
        data = Ipv6RequestSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = services.assign_ipv6(v["customer"], actor=request.user, nas=v.get("nas"),
                                      link_pool=v.get("link_pool"), delegated_pool=v.get("delegated_pool"),
                                      delegate=v["delegate"])
        items = [a for a in result if a is not None]
        return Response(AssignmentSerializer(items, many=True, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The visible assignments (filters apply) as CSV, in the import format."""
        return _csv_response(selectors.export_assignments_csv(self.filter_queryset(self.get_queryset())),
                             "assignments.csv")

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string",
                                                                                             "format": "binary"}}},
                            "text/csv": str},
                   parameters=_IMPORT_PARAMS, responses=ImportResultSerializer)
    @action(detail=False, methods=["post"], url_path="import", parser_classes=_IMPORT_PARSERS)
    def import_csv(self, request):
        """Import assignments from CSV; every bad row is reported and then nothing is written."""
        result = services.import_assignments_csv(_csv_text(request), actor=request.user,
                                                 tenant=_acting_tenant(request),
                                                 dry_run=request.query_params.get("dry_run") in ("1", "true", "yes"))
        return _import_response(result)


class ConflictReportView(APIView):
    """Every overlap, duplicate and rule violation in the stored IPAM data of the
    caller's tenant (the super admin: `?tenant=`, or all tenants). For those who may
    change prefixes: the admin and managers with manage_nas."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[OpenApiParameter("tenant", int)], responses={200: dict})
    def get(self, request):
        user = request.user
        if not can_write(user, "ipam.prefix", "change"):
            raise exceptions.PermissionDenied("You cannot see the IPAM conflict report.")
        if user.role == Role.SUPER_ADMIN:
            raw = request.query_params.get("tenant", "")
            tenant_id = int(raw) if raw.isdigit() else None
        else:
            tenant_id = user.tenant_id
        conflicts = [c.as_dict() for c in selectors.conflict_report(tenant_id)]
        return Response({"count": len(conflicts), "conflicts": conflicts})
