"""Card API, included at /api/v1/cards/:

    GET  /api/v1/cards/                      cards (no PINs)       POST /api/v1/cards/<id>/void/
    GET  /api/v1/cards/batches/              batches               POST /api/v1/cards/batches/  (generate)
    POST /api/v1/cards/batches/<id>/issue/   /sell/  /void/  /download/ (once)   GET .../summary/
    POST /api/v1/cards/redeem/               {"pin": "...", "customer": id (staff only)}
"""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import CardBatchViewSet, RechargeCardViewSet, redeem

router = SimpleRouter()
router.register("batches", CardBatchViewSet, basename="cardbatch")
router.register("", RechargeCardViewSet, basename="rechargecard")

urlpatterns = [
    path("redeem/", redeem, name="card-redeem"),
    path("", include(router.urls)),
]
