"""IPAM API, included under /api/v1/ipam/ by `path("ipam/", include("ipam.api.urls"))`."""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import AssignmentViewSet, ConflictReportView, PrefixViewSet, ReservationViewSet

router = SimpleRouter()
router.register("prefixes", PrefixViewSet, basename="ipam-prefix")
router.register("assignments", AssignmentViewSet, basename="ipam-assignment")
router.register("reservations", ReservationViewSet, basename="ipam-reservation")

urlpatterns = [
    path("conflicts/", ConflictReportView.as_view(), name="ipam-conflicts"),
    path("", include(router.urls)),
]
