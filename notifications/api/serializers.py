"""SMS API serializers. Reads show what the visibility rules let through; writes only
validate input and hand it to the SMS services (``notifications.services`` / ``campaigns``)."""
from __future__ import annotations

from rest_framework import serializers

from ispcore.api.base import ServiceSerializer

from .. import services
from ..models import Campaign, InboundMessage, Message, SmsTemplate

MAX_API_BULK = 1000


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "kind", "to_number", "sender", "text", "encoding", "parts", "price_per_part", "cost", "state",
                  "attempts", "error", "campaign", "customer", "promotional", "idempotency_key", "created_at",
                  "submitted_at", "finished_at"]
        read_only_fields = fields


class InboundMessageSerializer(serializers.ModelSerializer):
    line = serializers.CharField(source="line.value", default=None, read_only=True)
    reply_text = serializers.CharField(source="reply.text", default=None, read_only=True)

    class Meta:
        model = InboundMessage
        fields = ["id", "line", "from_number", "to_number", "text", "parts", "complete", "received_at", "customer",
                  "status", "data", "reply", "reply_text", "error", "read_at", "handled_at"]
        read_only_fields = fields


class SendSerializer(serializers.Serializer):
    """One number (``to``) or many (``numbers``, at most 1,000; bigger sends are campaigns)."""

    to = serializers.CharField(required=False, max_length=40)
    numbers = serializers.ListField(child=serializers.CharField(max_length=40), required=False,
                                    max_length=MAX_API_BULK, allow_empty=False)
    text = serializers.CharField(trim_whitespace=False)
    sender = serializers.CharField(required=False, max_length=16)
    promotional = serializers.BooleanField(default=False)
    tenant = serializers.IntegerField(required=False, help_text="Super admin only: the tenant to send for.")

    def validate(self, attrs):
        if bool(attrs.get("to")) == bool(attrs.get("numbers")):
            raise serializers.ValidationError({"to": "Give either 'to' (one number) or 'numbers' (a list)."})
        return attrs


class PreviewSerializer(serializers.Serializer):
    text = serializers.CharField(trim_whitespace=False, allow_blank=True)
    recipients = serializers.IntegerField(min_value=0, default=1)
    sender = serializers.CharField(required=False, max_length=16, allow_blank=True)
    tenant = serializers.IntegerField(required=False)


class TemplateSerializer(ServiceSerializer):
    class Meta:
        model = SmsTemplate
        fields = ["id", "tenant", "name", "body", "promotional", "created_at", "updated_at"]
        read_only_fields = ["tenant", "created_at", "updated_at"]

    def service_create(self, data, *, actor):
        return services.save_template(tenant=self.acting_tenant(), actor=actor, name=data["name"], body=data["body"],
                                      promotional=data.get("promotional", False))

    def service_update(self, instance, data, *, actor):
        return services.save_template(tenant=instance.tenant, actor=actor, template=instance,
                                      name=data.get("name", instance.name), body=data.get("body", instance.body),
                                      promotional=data.get("promotional", instance.promotional))


class CampaignSerializer(ServiceSerializer):
    sender = serializers.CharField(required=False, max_length=16)
    start = serializers.BooleanField(default=False, write_only=True, help_text="Materialise and start at once.")

    class Meta:
        model = Campaign
        fields = ["id", "tenant", "name", "promotional", "template", "body", "sender", "audience", "status",
                  "scheduled_at", "total", "invalid_count", "duplicate_count", "opted_out_count", "parts_total",
                  "cost_held", "report", "created_at", "started_at", "finished_at", "start"]
        read_only_fields = ["tenant", "status", "total", "invalid_count", "duplicate_count", "opted_out_count",
                            "parts_total", "cost_held", "report", "created_at", "started_at", "finished_at"]
        extra_kwargs = {"body": {"required": False, "allow_blank": True}}

    def service_create(self, data, *, actor):
        from ..campaigns import create_campaign, start_campaign

        campaign = create_campaign(tenant=self.acting_tenant(), actor=actor, name=data["name"],
                                   audience=data["audience"], body=data.get("body", ""), template=data.get("template"),
                                   sender=data.get("sender"), promotional=data.get("promotional", True),
                                   scheduled_at=data.get("scheduled_at"))
        if data.get("start"):
            campaign = start_campaign(campaign, actor=actor)
        return campaign
