"""MikroTik API, included under /api/v1/ by `path("", include("mikrotik.api.urls"))`."""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import RouterViewSet

router = SimpleRouter()
router.register("routers", RouterViewSet, basename="router")

urlpatterns = [path("", include(router.urls))]
