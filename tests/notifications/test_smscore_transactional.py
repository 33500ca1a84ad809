"""Transactional SMS from the outbox: sent once after commit, never after a rollback,
per-tenant switches, Bangla defaults, exactly once under concurrent consumers."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from ispcore.billing.sales import record_payment
from ispcore.celery import app
from ispcore.core.models import OutboxEvent
from ispcore.subscribers import services as subscribers
from notifications import credit
from notifications.models import EventTemplate, Message
from notifications.services import send_otp
from notifications.transactional import process_outbox
from tests.notifications.smscore_support import make_super, make_tenant


@pytest.fixture
def eager(settings):
    settings.SMS_DISPATCH_ON_COMMIT = False  # only the outbox task runs inline here
    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def customer(su, tenant, i=1):
    return subscribers.create_customer(actor=su, tenant=tenant, node=tenant.root_node, username=f"c{i}",
                                       password="pw1234", customer_type="pppoe", full_name=f"Rahim {i}",
                                       mobile=f"0171500000{i}")


@pytest.mark.django_db
def test_payment_sms_sent_once_after_commit(eager, django_capture_on_commit_callbacks):
    su = make_super()
    tenant, _ = make_tenant(su, "isp-tx")
    c = customer(su, tenant)
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(c, Decimal("500"), method="cash", actor=su, idempotency_key="p1")
    msgs = list(Message.objects.filter(kind=Message.Kind.TRANSACTIONAL))
    assert len(msgs) == 1
    m = msgs[0]
    assert m.to_number == "+8801715000001" and m.customer_id == c.pk and m.encoding == "ucs2"
    assert "Rahim 1" in m.text and "500" in m.text and "পেমেন্ট" in m.text
    event = OutboxEvent.objects.get(kind="payment.received")
    assert m.event_id == event.pk and event.processed_at is not None
    assert process_outbox() == {"sent": 0, "off": 0, "skipped": 0, "failed": 0}
    assert Message.objects.count() == 1
    assert credit.held(tenant.pk) == m.cost


@pytest.mark.django_db
def test_nothing_sent_after_rollback(eager, django_capture_on_commit_callbacks):
    su = make_super()
    tenant, _ = make_tenant(su, "isp-rb")
    c = customer(su, tenant)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            record_payment(c, Decimal("500"), method="cash", actor=su, idempotency_key="p2")
            raise RuntimeError("the payment failed later in the same transaction")
    assert callbacks == []
    assert process_outbox()["sent"] == 0
    assert not OutboxEvent.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db
def test_tenant_switch_and_own_template(eager, django_capture_on_commit_callbacks):
    su = make_super()
    tenant, _ = make_tenant(su, "isp-sw")
    c = customer(su, tenant)
    EventTemplate.objects.create(tenant=tenant, event="payment.received", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(c, Decimal("100"), method="cash", actor=su, idempotency_key="p3")
    assert not Message.objects.exists()
    assert OutboxEvent.objects.get().processed_at is not None
    EventTemplate.objects.filter(tenant=tenant).update(enabled=True, body="Got {amount} Tk, thanks {name}")
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(c, Decimal("200"), method="cash", actor=su, idempotency_key="p4")
    assert list(Message.objects.values_list("text", flat=True)) == ["Got 200.00 Tk, thanks Rahim 1"]


@pytest.mark.django_db
def test_event_template_validation():
    from django.core.exceptions import ValidationError

    su = make_super()
    tenant, _ = make_tenant(su, "isp-et")
    EventTemplate(tenant=tenant, event="otp", body="Code {code}").full_clean()
    with pytest.raises(ValidationError):
        EventTemplate(tenant=tenant, event="payment.received", body="Code {code}").full_clean()


@pytest.mark.django_db
def test_otp_uses_the_bangla_default():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-otp")
    message, code = send_otp(tenant=tenant, to="01711000009")
    assert len(code) == 6 and code in message.text and "কোড" in message.text
    assert message.kind == Message.Kind.OTP


@pytest.mark.django_db(transaction=True)
def test_exactly_once_with_concurrent_consumers():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-cc")
    c = customer(su, tenant)
    for i in range(40):
        record_payment(c, Decimal("10"), method="cash", actor=su, idempotency_key=f"cc{i}")
    barrier = threading.Barrier(4)
    errors = []

    def consume():
        try:
            barrier.wait()
            while process_outbox(limit=5)["sent"]:
                pass
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Message.objects.count() == 40
    assert Message.objects.values("event_id").distinct().count() == 40
    assert not OutboxEvent.objects.filter(processed_at__isnull=True).exists()
