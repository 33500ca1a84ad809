"""The IPAM API mounted where the project mounts it (/api/v1/ipam/), for these tests."""
from django.urls import include, path

urlpatterns = [path("api/v1/ipam/", include("ipam.api.urls"))]
