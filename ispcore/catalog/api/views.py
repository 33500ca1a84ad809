from django.core.exceptions import PermissionDenied

from ispcore.api.base import VisibleModelViewSet

from .. import services
from ..models import Package, PriceListEntry
from .serializers import PackageSerializer, PriceListEntrySerializer


class PackageViewSet(VisibleModelViewSet):
    """Packages: admins (and managers allowed to) edit; resellers see the ones they may sell."""

    queryset = Package.objects.all()
    serializer_class = PackageSerializer
    filterset_fields = ["billing_mode", "is_active", "for_pppoe", "for_hotspot", "for_static", "for_other"]
    search_fields = ["name"]

    def service_delete(self, instance, *, actor):
        services.delete_package(instance, actor=actor)


class PriceListEntryViewSet(VisibleModelViewSet):
    """Per-node prices: what a reseller pays and what its customers pay."""

    queryset = PriceListEntry.objects.all()
    serializer_class = PriceListEntrySerializer
    filterset_fields = ["node", "package", "is_active"]
    select_related = ("node", "package")

    def perform_update(self, serializer):
        self._refuse_own(serializer.instance)
        super().perform_update(serializer)

    def _refuse_own(self, entry):
        user = self.request.user
        if user.role not in ("admin", "super_admin") and entry.node_id == user.node_id:
            raise PermissionDenied("You cannot change your own purchase price.")

    def service_delete(self, instance, *, actor):
        self._refuse_own(instance)
        services.remove_price(instance, actor=actor)
