from ispcore.api.base import VisibleModelViewSet

from ..models import Customer, Nas, Zone
from .serializers import CustomerSerializer, NasSerializer, ZoneSerializer


class ZoneViewSet(VisibleModelViewSet):
    """Zones and areas of coverage."""

    queryset = Zone.objects.all()
    serializer_class = ZoneSerializer
    filterset_fields = ["parent"]
    search_fields = ["name"]

    def service_delete(self, instance, *, actor):
        from django.core.exceptions import ValidationError

        if instance.customers.exists() or instance.areas.exists():
            raise ValidationError({"zone": "The zone still has customers or areas."})
        instance.delete()


class NasViewSet(VisibleModelViewSet):
    """Routers that use our RADIUS server; secrets are write-only."""

    queryset = Nas.objects.all()
    serializer_class = NasSerializer
    filterset_fields = ["nas_type", "is_active"]
    search_fields = ["name", "ip_address"]


class CustomerViewSet(VisibleModelViewSet):
    """Subscribers of the four types; a customer sees only itself."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    filterset_fields = ["customer_type", "status", "package", "zone", "node"]
    search_fields = ["username", "full_name", "mobile"]
    ordering_fields = ["username", "expires_at", "created_at"]
    select_related = ("wallet",)
    http_method_names = ["get", "post", "patch", "head", "options"]
