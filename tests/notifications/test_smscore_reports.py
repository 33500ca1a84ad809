"""Receipt states, roll-up, and matching when providers recycle ids."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from notifications import reports
from notifications.models import DeliveryReport, Message, MessagePart
from notifications.services import queue_message
from tests.notifications.smscore_support import make_super, make_tenant

P = MessagePart.State
M = Message.State


def test_receipt_state_prefers_the_tlv():
    assert reports.receipt_state("DELIVRD", None) == P.DELIVERED
    assert reports.receipt_state("undeliv", None) == P.UNDELIVERED
    assert reports.receipt_state("DELIVRD", 5) == P.UNDELIVERED
    assert reports.receipt_state("ENROUTE", None) == P.SENT
    assert reports.receipt_state("garbage", None) == P.UNKNOWN
    assert reports.receipt_state(None, 8) == P.REJECTED


@pytest.mark.parametrize("parts,expected,state", [
    ([P.DELIVERED, P.DELIVERED], 2, M.DELIVERED),
    ([P.DELIVERED, P.SUBMITTED], 2, M.SENT),
    ([P.SUBMITTED], 2, M.SUBMITTED),
    ([P.DELIVERED, P.UNDELIVERED], 2, M.UNDELIVERED),
    ([P.EXPIRED, P.REJECTED], 2, M.REJECTED),
    ([P.UNKNOWN, P.DELIVERED], 2, M.UNKNOWN),
    ([P.DELIVERED], 2, M.SENT),
])
def test_rollup_state(parts, expected, state):
    assert reports.rollup_state(parts, expected) == state


@pytest.mark.django_db
def test_recycled_id_matches_the_recent_part_only(settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, _ = make_tenant(su, "isp-recycle")
    now = timezone.now()
    old = queue_message(tenant=tenant, to="01711000001", text="old", actor=su)
    new = queue_message(tenant=tenant, to="01711000002", text="new", actor=su)
    Message.objects.filter(pk__in=[old.pk, new.pk]).update(state=M.SUBMITTED, charged_at=now)
    MessagePart.objects.create(message=old, index=0, provider="p", message_key="42", submitted_at=now - timedelta(days=4))
    fresh = MessagePart.objects.create(message=new, index=0, provider="p", message_key="42", submitted_at=now)
    DeliveryReport.objects.create(provider="p", message_key="42", stat="DELIVRD", state=P.DELIVERED,
                                  recipient="8801711000002", received_at=now)
    assert reports.apply_reports() == 1
    assert DeliveryReport.objects.get().part_id == fresh.pk
    assert Message.objects.get(pk=new.pk).state == M.DELIVERED
    assert Message.objects.get(pk=old.pk).state == M.SUBMITTED
    assert new.cost == Decimal("0.35")


@pytest.mark.django_db
def test_unknown_receipt_is_retried_then_set_aside(settings):
    DeliveryReport.objects.create(provider="p", message_key="nope", stat="DELIVRD", state=P.DELIVERED,
                                  recipient="8801711000009", received_at=timezone.now())
    DeliveryReport.objects.create(provider="p", message_key="nope2", stat="DELIVRD", state=P.DELIVERED,
                                  recipient="8801711000009", received_at=timezone.now() - timedelta(minutes=5))
    assert reports.apply_reports() == 0
    assert list(DeliveryReport.objects.order_by("message_key").values_list("processed", flat=True)) == [False, True]
