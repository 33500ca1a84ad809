"""SMS HTTP API (/api/v1/sms/...). Lists start from ``visible_to(user)``; every write is a
service call; who may send single vs bulk is ``accounts.policy`` (SMS_SINGLE / SMS_BULK).

Sending is idempotent with the ``Idempotency-Key`` header: a retry with the same key
returns the same message(s) (200 instead of 201) and sends nothing twice; the same key
with a different request is a 409."""
from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from ispcore.accounts.models import Tenant
from ispcore.accounts.policy import can_write
from ispcore.accounts.roles import ManagerPermission as P
from ispcore.accounts.roles import Role
from ispcore.api.base import VisibleModelViewSet, VisibleReadOnlyViewSet
from ispcore.core.money import to_money

from .. import campaigns, credit, services, webhooks
from ..encoding import SegmentationError, TooManyPartsError, segment
from ..models import Campaign, InboundMessage, Message, SenderId, SmsTemplate, WebhookEndpoint
from ..numbers import normalise_numbers
from .serializers import (
    CampaignSerializer,
    InboundMessageSerializer,
    MessageSerializer,
    PreviewSerializer,
    SendSerializer,
    TemplateSerializer,
)

SMS_READERS = {P.SEND_SMS, P.SEND_BULK_SMS, P.VIEW_SMS, P.VIEW_LEDGER}


def acting_tenant(request, raw=None) -> Tenant:
    """The caller's tenant; the super admin names one (``tenant`` in the body or query)."""
    user = request.user
    if user.tenant_id:
        return user.tenant
    raw = raw if raw is not None else request.query_params.get("tenant")
    tenant = Tenant.objects.filter(pk=raw).first() if str(raw or "").isdigit() else None
    if tenant is None:
        raise exceptions.ValidationError({"tenant": "Name the tenant (its id) to act for."})
    return tenant


def may_send(user, bulk: bool) -> bool:
    return can_write(user, "notifications.campaign" if bulk else "notifications.message", "create")


def reads_sms(user) -> bool:
    if user.role in (Role.SUPER_ADMIN, Role.ADMIN):
        return True
    return user.role == Role.MANAGER and any(user.has_manager_permission(p) for p in SMS_READERS)


class MessageViewSet(VisibleReadOnlyViewSet):
    """Messages the caller may see, with their delivery state (``?state=delivered``,
    ``?campaign=<id>``, ``?kind=api``, ``?to_number=+880...``)."""

    queryset = Message.objects.all().order_by("-id")
    serializer_class = MessageSerializer
    filterset_fields = ["state", "campaign", "kind", "to_number"]


class InboxViewSet(VisibleReadOnlyViewSet):
    """Incoming messages on the tenant's dedicated lines (``?status=new``, ``?line=<id>``)."""

    queryset = InboundMessage.objects.all()
    serializer_class = InboundMessageSerializer
    filterset_fields = ["status", "line", "customer"]
    select_related = ("line", "reply")


class TemplateViewSet(VisibleModelViewSet):
    queryset = SmsTemplate.objects.all()
    serializer_class = TemplateSerializer

    def service_delete(self, instance, *, actor):
        from ispcore.core import audit

        audit.record("sms.template.delete", instance, actor=actor, name=instance.name)
        instance.delete()


class CampaignPolicy(permissions.BasePermission):
    """Reads need a login; creating and the start/pause/resume/cancel actions need SMS_BULK."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS or request.method.lower() not in view.http_method_names:
            return True
        return can_write(request.user, "notifications.campaign", "create" if view.action == "create" else "change")


class CampaignViewSet(VisibleModelViewSet):
    """Bulk sends. POST creates a draft (``"start": true`` materialises and starts it);
    ``/start/``, ``/pause/``, ``/resume/``, ``/cancel/``; ``/progress/`` is the live count."""

    queryset = Campaign.objects.all()
    serializer_class = CampaignSerializer
    permission_classes = [CampaignPolicy]
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["status", "promotional"]

    def _act(self, request, func):
        # the services lock the row and re-check its status inside their own transaction
        campaign = func(self.get_object(), actor=request.user)
        return Response(CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._act(request, campaigns.start_campaign)

    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(request, campaigns.pause_campaign)

    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, campaigns.resume_campaign)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(request, campaigns.cancel_campaign)

    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        data = campaigns.progress(self.get_object())
        data["charged"], data["refunded"] = str(data["charged"]), str(data["refunded"])
        return Response(data)


class SendView(APIView):
    """POST ``{"to": "01711...", "text": "..."}`` (single: send_sms) or
    ``{"numbers": [...], "text": "..."}`` (bulk, at most 1,000: send_bulk_sms)."""

    @extend_schema(request=SendSerializer, responses=MessageSerializer(many=True))
    def post(self, request):
        serializer = SendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        bulk = bool(data.get("numbers"))
        if not may_send(request.user, bulk):
            raise exceptions.PermissionDenied("You may not send bulk SMS." if bulk else "You may not send SMS.")
        tenant = acting_tenant(request, data.get("tenant"))
        key = (request.headers.get("Idempotency-Key") or "").strip()
        if len(key) > 100:
            raise exceptions.ValidationError({"Idempotency-Key": "At most 100 characters."})
        region = tenant.phone_region or "BD"
        if bulk:
            result = normalise_numbers(data["numbers"], region)
            numbers, invalid = result.valid, result.invalid
            if not numbers:
                raise exceptions.ValidationError({"numbers": "No valid number.", "invalid": invalid})
        else:
            numbers, invalid = [data["to"]], []
        keys = [f"api:{key}:{i}" if bulk else f"api:{key}" for i, _n in enumerate(numbers)] if key else \
            [""] * len(numbers)
        if key:
            existing = list(Message.objects.filter(tenant=tenant, idempotency_key__in=keys).order_by("id"))
            if existing:
                if len(existing) != len(keys) or any(m.text != data["text"] for m in existing) or (
                        not bulk and existing[0].to_number != services.normalise_mobile(data["to"], region)):
                    return Response({"error": {"status": 409, "code": "idempotency_conflict", "fields": {},
                                               "message": "This Idempotency-Key was used for a different request."}},
                                    status=status.HTTP_409_CONFLICT)
                return Response(self._body(existing, invalid, bulk, replayed=True), status=status.HTTP_200_OK)
        sender = data.get("sender") or None
        with transaction.atomic():
            messages = [services.queue_message(
                tenant=tenant, to=number, text=data["text"], kind=Message.Kind.API, actor=request.user,
                sender=sender, promotional=data["promotional"], idempotency_key=k)
                for number, k in zip(numbers, keys, strict=True)]
        return Response(self._body(messages, invalid, bulk, replayed=False), status=status.HTTP_201_CREATED)

    @staticmethod
    def _body(messages, invalid, bulk, *, replayed):
        rows = MessageSerializer(messages, many=True).data
        if not bulk:
            return {**rows[0], "replayed": replayed}
        return {"messages": rows, "invalid": invalid, "replayed": replayed,
                "cost": str(sum((m.cost for m in messages), Decimal("0.00")))}


def preview(tenant, text: str, recipients: int = 1, sender: str | None = None) -> dict:
    """What the compose counter shows, computed by ``notifications.encoding.segment`` itself."""
    line = SenderId.objects.filter(tenant=tenant, value=sender).first() if sender else None
    route = (line.route if line and line.route_id else None) or campaigns.default_route(tenant.pk)
    try:
        price = campaigns.price_per_part(tenant.pk, route)
    except ValidationError:
        price = None
    out = {"characters": len(text), "encoding": None, "parts": 0, "units": 0, "per_part": None, "remaining": None,
           "price_per_part": str(price) if price is not None else None, "recipients": recipients,
           "cost_per_recipient": "0.00", "total_cost": "0.00", "error": "", "bangla": False, "sendable": False}
    if not text:
        return out
    from ..encoding import contains_bangla

    try:
        seg = segment(text)
    except TooManyPartsError as exc:
        seg = segment(text, max_parts=None)
        out["error"] = str(exc)
    except SegmentationError as exc:
        out["error"] = str(exc)
        return out
    cost = to_money((price or Decimal("0")) * seg.count)
    out.update(encoding=seg.encoding, parts=seg.count, units=seg.total_units, per_part=seg.limit,
               remaining=seg.remaining, cost_per_recipient=str(cost), total_cost=str(to_money(cost * recipients)),
               bangla=contains_bangla(text), sendable=not out["error"] and price is not None)
    if price is None:
        out["error"] = "No SMS route is configured."
    return out


class PreviewView(APIView):
    """``{encoding, parts, characters, units, per_part, remaining, cost_per_recipient, total_cost}``
    for a text: the compose page's live counter calls this (debounced) as you type."""

    def _answer(self, request, data):
        serializer = PreviewSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        if not may_send(request.user, False):
            raise exceptions.PermissionDenied("You may not send SMS.")
        d = serializer.validated_data
        tenant = acting_tenant(request, d.get("tenant"))
        return Response(preview(tenant, d["text"], d["recipients"], d.get("sender") or None))

    @extend_schema(request=PreviewSerializer)
    def post(self, request):
        return self._answer(request, request.data)

    def get(self, request):
        return self._answer(request, request.query_params)


class BalanceView(APIView):
    """The SMS balance the tenant can spend, what is held for messages in flight, and the
    price per part on its default route."""

    def get(self, request):
        if not reads_sms(request.user):
            raise exceptions.PermissionDenied("You may not see the SMS balance.")
        tenant = acting_tenant(request)
        route = campaigns.default_route(tenant.pk)
        try:
            price = str(campaigns.price_per_part(tenant.pk, route))
        except ValidationError:
            price = None
        by_state = dict(Message.objects.filter(tenant=tenant, state__in=["queued", "submitting"])
                        .values_list("state").annotate(n=Count("id")))
        return Response({"tenant": tenant.pk, "currency": tenant.currency, "balance": str(credit.balance(tenant.pk)),
                         "held": str(credit.held(tenant.pk)), "price_per_part": price,
                         "route": route.name if route else None, "pending": by_state})


class StatsView(APIView):
    """Sent / delivered / undelivered / pending messages, parts and net cost of the messages the
    caller may see: ``?group_by=campaign|user|group|day`` (none: one total row),
    ``?campaign=<id>``, ``?since=`` / ``?until=`` (ISO dates or times, tenant time zone)."""

    def get(self, request):
        from django.utils import timezone
        from django.utils.dateparse import parse_date, parse_datetime

        from ..selectors import message_stats

        if not reads_sms(request.user):
            raise exceptions.PermissionDenied("You may not see SMS statistics.")
        tenant = acting_tenant(request)

        def moment(name):
            raw = request.query_params.get(name)
            if not raw:
                return None
            value = parse_datetime(raw)
            if value is None and parse_date(raw) is not None:
                day = parse_date(raw)
                value = timezone.datetime(day.year, day.month, day.day)
            if value is None:
                raise exceptions.ValidationError({name: "Give an ISO date or date-time."})
            return value if timezone.is_aware(value) else timezone.make_aware(value, tenant.tzinfo)

        campaign = request.query_params.get("campaign")
        if campaign is not None and not campaign.isdigit():
            raise exceptions.ValidationError({"campaign": "A campaign id."})
        try:
            rows = message_stats(Message.objects.visible_to(request.user), tenant_id=tenant.pk,
                                 campaign_id=int(campaign) if campaign else None, since=moment("since"),
                                 until=moment("until"), group_by=request.query_params.get("group_by") or None)
        except ValueError as exc:
            raise exceptions.ValidationError({"group_by": str(exc)}) from None
        return Response({"tenant": tenant.pk, "currency": tenant.currency, "rows": rows})


class WebhookView(APIView):
    """GET / PUT the tenant's delivery-status webhook (admin only). The secret is write-only."""

    def _check(self, request):
        if request.user.role not in (Role.SUPER_ADMIN, Role.ADMIN):
            raise exceptions.PermissionDenied("Only the ISP's admin configures the SMS webhook.")
        return acting_tenant(request, request.data.get("tenant") if request.method == "PUT" else None)

    @staticmethod
    def _show(endpoint):
        if endpoint is None:
            return {"url": None, "is_active": False}
        return {"url": endpoint.url, "is_active": endpoint.is_active, "has_secret": bool(endpoint.secret),
                "max_attempts": endpoint.max_attempts, "backoff_seconds": endpoint.backoff_seconds}

    def get(self, request):
        tenant = self._check(request)
        return Response(self._show(WebhookEndpoint.objects.filter(tenant=tenant).first()))

    def put(self, request):
        tenant = self._check(request)
        d = request.data
        endpoint = webhooks.configure(tenant, actor=request.user, url=str(d.get("url") or ""),
                                      secret=d.get("secret"), is_active=bool(d.get("is_active", True)),
                                      max_attempts=d.get("max_attempts"), backoff_seconds=d.get("backoff_seconds"))
        return Response(self._show(endpoint))
