"""SMS API, included at /api/v1/sms/:

    GET  messages/ [<id>/]      status of the messages the caller may see
    GET  inbox/ [<id>/]         incoming messages on dedicated lines
    CRUD templates/             reusable texts with placeholders
    GET/POST campaigns/         bulk sends; <id>/start|pause|resume|cancel/ (POST), <id>/progress/ (GET)
    POST send/                  single ({"to"}) or bulk ({"numbers"}); header Idempotency-Key
    GET|POST preview/           {encoding, parts, characters, cost...} for a text (the live counter)
    GET  balance/               SMS credit, held amount, price per part
    GET  stats/                 sent/delivered/undelivered/cost, ?group_by=campaign|user|group|day
    GET|PUT webhook/            the tenant's delivery-status webhook
"""
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import (
    BalanceView,
    CampaignViewSet,
    InboxViewSet,
    MessageViewSet,
    PreviewView,
    SendView,
    StatsView,
    TemplateViewSet,
    WebhookView,
)

router = SimpleRouter()
router.register("messages", MessageViewSet, basename="sms-message")
router.register("inbox", InboxViewSet, basename="sms-inbox")
router.register("templates", TemplateViewSet, basename="sms-template")
router.register("campaigns", CampaignViewSet, basename="sms-campaign")

urlpatterns = [
    path("send/", SendView.as_view(), name="sms-send"),
    path("preview/", PreviewView.as_view(), name="sms-preview"),
    path("balance/", BalanceView.as_view(), name="sms-balance"),
    path("stats/", StatsView.as_view(), name="sms-stats"),
    path("webhook/", WebhookView.as_view(), name="sms-webhook"),
    path("", include(router.urls)),
]
