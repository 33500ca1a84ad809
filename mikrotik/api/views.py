"""Routers (MikroTik view of a NAS): last sync, sync runs, live status, drift, repair, kick.

Visibility is the NAS's: the tenant's admin and managers with the ``manage_nas``
permission (everyone else gets 404s and empty lists). Actions that touch the
router (repair, kick) also need the right to change a NAS."""
from __future__ import annotations

from django.db.models import OuterRef, Subquery
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from ispcore.accounts.policy import can_write
from ispcore.api.base import VisibleReadOnlyViewSet
from ispcore.subscribers.models import Nas

from .. import services
from ..client import RouterError
from ..models import RouterSettings, RouterSyncRun
from ..sync import drift_report
from .serializers import RouterSerializer, RouterSyncRunSerializer

#: A web request waits for the router: fail in seconds, not after the background sync's retries.
INTERACTIVE = {"timeout": 5, "attempts": 1}


class KickSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=64)


def _router_error(exc: RouterError) -> Response:
    return Response({"error": {"status": 502, "code": type(exc).__name__, "message": exc.message, "fields": {}}},
                    status=status.HTTP_502_BAD_GATEWAY)


class RouterViewSet(VisibleReadOnlyViewSet):
    """MikroTik routers (NAS) and their sync state. Read-only; changes go through actions."""

    queryset = Nas.objects.all()
    serializer_class = RouterSerializer

    def get_queryset(self):
        latest = RouterSyncRun.objects.filter(nas_id=OuterRef("pk"), dry_run=False).order_by("-started_at", "-id")
        mode = RouterSettings.objects.filter(nas_id=OuterRef("pk")).values("access_mode")[:1]
        return super().get_queryset().annotate(_last_run_id=Subquery(latest.values("id")[:1]),
                                               _access_mode=Subquery(mode))

    def _attach_runs(self, routers):
        ids = [r._last_run_id for r in routers if r._last_run_id]
        runs = RouterSyncRun.objects.in_bulk(ids)
        for router in routers:
            router._last_run = runs.get(router._last_run_id)
        return routers

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(self._attach_runs(page), many=True).data)

    def retrieve(self, request, *args, **kwargs):
        router = self._attach_runs([self.get_object()])[0]
        return Response(self.get_serializer(router).data)

    def _writable(self, request) -> None:
        if not can_write(request.user, "subscribers.nas", "change"):
            raise PermissionDenied("You may not change routers.")

    def _mikrotik(self, nas: Nas) -> None:
        if nas.nas_type != Nas.NasType.MIKROTIK or not nas.api_username:
            raise serializers.ValidationError({"nas": "This router is not a MikroTik with an API user."})

    @action(detail=True, methods=["get"], url_path="sync-runs")
    def sync_runs(self, request, pk=None):
        """This router's sync runs, newest first."""
        nas = self.get_object()
        page = self.paginate_queryset(RouterSyncRun.objects.filter(nas=nas).order_by("-started_at", "-id"))
        return self.get_paginated_response(RouterSyncRunSerializer(page, many=True).data)

    @action(detail=True, methods=["post"])
    def repair(self, request, pk=None):
        """Queue a sync (trigger 'repair') that makes the router match the system again."""
        nas = self.get_object()
        self._writable(request)
        self._mikrotik(nas)
        services.queue_sync(nas, trigger=RouterSyncRun.Trigger.REPAIR, actor=request.user)
        return Response({"queued": True, "nas": nas.pk}, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["get"])
    def drift(self, request, pk=None):
        """What differs from the desired state (a dry run: only prints are sent; recorded as a run)."""
        nas = self.get_object()
        self._mikrotik(nas)
        try:
            result = drift_report(nas, **INTERACTIVE)
        except RouterError as exc:
            return _router_error(exc)
        return Response({"in_sync": result.in_sync, "run": result.run_id, **result.as_dict()})

    @action(detail=True, methods=["get"], url_path="status")
    def router_status(self, request, pk=None):
        """Identity, version, uptime, resources and live sessions, read from the router now."""
        nas = self.get_object()
        self._mikrotik(nas)
        try:
            return Response(services.router_status(nas, **INTERACTIVE).as_dict())
        except RouterError as exc:
            return _router_error(exc)

    @action(detail=True, methods=["post"])
    def kick(self, request, pk=None):
        """Remove a user's live sessions from the router ({"username": ...})."""
        nas = self.get_object()
        self._writable(request)
        self._mikrotik(nas)
        body = KickSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            kicked = services.kick_session(nas, body.validated_data["username"], actor=request.user, **INTERACTIVE)
        except RouterError as exc:
            return _router_error(exc)
        return Response({"kicked": kicked})
