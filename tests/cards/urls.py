"""The project's URLs plus the card API at /api/v1/cards/ (as ispcore/urls.py will include it)."""
from django.urls import include, path

from ispcore.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/v1/cards/", include("ispcore.cards.api.urls")), *project_urlpatterns]
