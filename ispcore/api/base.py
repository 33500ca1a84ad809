"""Base classes every API view uses, so visibility and the write policy cannot be forgotten."""
from __future__ import annotations

from django.db import transaction
from rest_framework import permissions, serializers, viewsets

from ispcore.accounts.policy import can_write

_ACTIONS = {"POST": "create", "PUT": "change", "PATCH": "change", "DELETE": "delete"}


class WritePolicy(permissions.BasePermission):
    """Reads need a login (the queryset is already narrowed); writes need the policy's grant."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if request.method.lower() not in view.http_method_names:
            return True  # answered 405 by the view: the method does not exist here for anyone
        return can_write(request.user, view.queryset.model._meta.label_lower, _ACTIONS.get(request.method, "change"))


class VisibleRelatedFieldsMixin:
    """Narrows every related-object choice to what the requesting user may see, so a
    foreign id is reported as 'does not exist' (400 with the field named) and never used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        for field in self.fields.values():
            target = getattr(field, "child_relation", field)
            qs = getattr(target, "queryset", None)
            if qs is not None and hasattr(qs, "visible_to"):
                target.queryset = qs.visible_to(user)


class ServiceSerializer(VisibleRelatedFieldsMixin, serializers.ModelSerializer):
    """A ModelSerializer that validates input but writes only through a service:
    subclasses define `service_create(data, actor=)` and `service_update(instance, data, actor=)`."""

    def acting_tenant(self):
        """The tenant a create applies to: the actor's own, or for the super admin the
        `tenant` id given in the request body."""
        actor = self.context["request"].user
        if actor.tenant_id:
            return actor.tenant
        from ispcore.accounts.models import Tenant

        raw = self.initial_data.get("tenant") if hasattr(self, "initial_data") else None
        tenant = Tenant.objects.filter(pk=raw).first() if str(raw or "").isdigit() else None
        if tenant is None:
            raise serializers.ValidationError({"tenant": "Name the tenant (its id) this record belongs to."})
        return tenant

    def create(self, validated_data):
        return self.service_create(validated_data, actor=self.context["request"].user)

    def update(self, instance, validated_data):
        return self.service_update(instance, validated_data, actor=self.context["request"].user)


class VisibleModelViewSet(viewsets.ModelViewSet):
    """Every list, detail, update and delete starts from `visible_to(request.user)`;
    an object outside the user's scope is a 404, never a 403 that confirms it exists."""

    permission_classes = [WritePolicy]
    select_related: tuple[str, ...] = ()

    def get_queryset(self):
        qs = self.queryset.model.objects.visible_to(self.request.user)
        if self.select_related:
            qs = qs.select_related(*self.select_related)
        return qs.order_by(*(self.queryset.query.order_by or self.queryset.model._meta.ordering or ["pk"]))

    def perform_create(self, serializer):
        with transaction.atomic():
            serializer.save()

    def perform_update(self, serializer):
        with transaction.atomic():
            # Re-check inside the transaction that the row is still in scope for this user.
            self.get_queryset().select_for_update(of=("self",)).get(pk=serializer.instance.pk)
            serializer.save()

    def perform_destroy(self, instance):
        with transaction.atomic():
            self.get_queryset().select_for_update(of=("self",)).get(pk=instance.pk)
            self.service_delete(instance, actor=self.request.user)

    def service_delete(self, instance, *, actor):
        instance.delete()


class VisibleReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [permissions.IsAuthenticated]
    select_related: tuple[str, ...] = ()

    def get_queryset(self):
        qs = self.queryset.model.objects.visible_to(self.request.user)
        if self.select_related:
            qs = qs.select_related(*self.select_related)
        return qs.order_by(*(self.queryset.query.order_by or self.queryset.model._meta.ordering or ["pk"]))
