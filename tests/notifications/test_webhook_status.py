"""Delivery-status webhook out, against a real local HTTP receiver: signed body, retries
with backoff, given up after max_attempts, nothing posted twice, configured through the API."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ispcore.accounts import services as accounts
from ispcore.accounts.roles import Role
from notifications import reports, webhooks
from notifications.models import Message, WebhookDelivery, WebhookEndpoint
from notifications.services import queue_message
from notifications.worker import Sender, build_route_providers
from tests.notifications.smscore_support import make_super, make_tenant
from tests.peers.smsc import SMSCSimulator

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """A local HTTP server that records every POST and answers ``fail_first`` of them with 500."""

    def __init__(self, fail_first: int = 0):
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = 500 if len(outer.requests) <= outer.fail_first else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms-status"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


@pytest.fixture
def env(sim):
    su = make_super()
    tenant, route = make_tenant(su, "isp-hook", port=sim.port)
    sender = Sender(build_route_providers([route]), name="hook", batch_size=10, submit_timeout=5)
    sender.start()
    yield su, tenant, sender
    sender.stop()


def deliver(sender, message_ids, state="delivered", seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.run_once()
        reports.apply_reports()
        if all(Message.objects.get(pk=m).state == state for m in message_ids):
            return
        time.sleep(0.05)
    raise AssertionError([Message.objects.get(pk=m).state for m in message_ids])


def test_final_states_are_posted_signed_and_once(env, sim):
    su, tenant, sender = env
    sim.configure(dlr="late", dlr_delay=0.02)
    sim.configure("8801711000802", dlr="late", dlr_stat="UNDELIV", dlr_err="001", dlr_delay=0.02)
    with Receiver() as receiver:
        webhooks.configure(tenant, actor=su, url=receiver.url, secret="s3cret")
        ok = queue_message(tenant=tenant, to="01711000801", text="Paid, thanks", actor=su, idempotency_key="api:k1")
        bad = queue_message(tenant=tenant, to="01711000802", text="Paid, thanks", actor=su)
        deliver(sender, [ok.pk])
        deliver(sender, [bad.pk], state="undelivered")
        assert webhooks.scan() == 2
        assert webhooks.scan() == 0  # nothing queued twice
        assert webhooks.deliver_due() == {"delivered": 2, "retry": 0, "failed": 0}
        assert webhooks.deliver_due() == {"delivered": 0, "retry": 0, "failed": 0}
    assert len(receiver.requests) == 2
    seen = {}
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-isp-signature"], expected)
        data = json.loads(body)
        seen[data["message"]["id"]] = data["message"]
        assert headers["x-isp-delivery"] == str(data["delivery_id"])
    assert seen[ok.pk]["state"] == "delivered" and seen[ok.pk]["idempotency_key"] == "k1"
    assert seen[bad.pk]["state"] == "undelivered" and Decimal(seen[bad.pk]["cost"]) == bad.cost


def test_failures_are_retried_with_backoff_then_given_up(env, sim):
    su, tenant, sender = env
    sim.configure(dlr="late", dlr_delay=0.02)
    with Receiver(fail_first=2) as receiver:
        webhooks.configure(tenant, actor=su, url=receiver.url, secret="k", backoff_seconds=60, max_attempts=5)
        msg = queue_message(tenant=tenant, to="01711000811", text="Hello", actor=su)
        deliver(sender, [msg.pk])
        webhooks.scan()
        t0 = timezone.now()
        assert webhooks.deliver_due(now=t0) == {"delivered": 0, "retry": 1, "failed": 0}
        row = WebhookDelivery.objects.get()
        assert row.attempts == 1 and row.response_status == 500
        assert timedelta(seconds=59) <= row.next_attempt_at - t0 <= timedelta(seconds=62)
        assert webhooks.deliver_due(now=t0 + timedelta(seconds=30))["retry"] == 0  # not due yet
        assert webhooks.deliver_due(now=t0 + timedelta(seconds=61))["retry"] == 1
        row.refresh_from_db()
        assert row.attempts == 2 and timedelta(seconds=119) <= row.next_attempt_at - timezone.now() \
            <= timedelta(seconds=122)
        assert webhooks.deliver_due(now=t0 + timedelta(seconds=400))["delivered"] == 1
    assert len(receiver.requests) == 3
    assert [json.loads(b)["attempt"] for _h, b in receiver.requests] == [1, 2, 3]
    # an endpoint that never answers: given up after max_attempts
    WebhookEndpoint.objects.filter(tenant=tenant).update(url="http://127.0.0.1:9/closed", max_attempts=2,
                                                         backoff_seconds=0)
    msg2 = queue_message(tenant=tenant, to="01711000812", text="Hello", actor=su)
    deliver(sender, [msg2.pk])
    webhooks.scan()
    webhooks.deliver_due()
    assert webhooks.deliver_due(now=timezone.now() + timedelta(seconds=1)) == {"delivered": 0, "retry": 0,
                                                                               "failed": 1}
    failed = WebhookDelivery.objects.get(message=msg2)
    assert failed.status == "failed" and failed.attempts == 2 and failed.last_error


def test_the_celery_task_runs_scan_and_delivery(env, sim):
    su, tenant, sender = env
    sim.configure(dlr="late", dlr_delay=0.02)
    with Receiver() as receiver:
        webhooks.configure(tenant, actor=su, url=receiver.url, secret="k")
        msg = queue_message(tenant=tenant, to="01711000821", text="Hello", actor=su)
        deliver(sender, [msg.pk])
        webhooks.deliver_webhooks_task.apply()
    assert len(receiver.requests) == 1


def test_configured_through_the_api_by_the_admin_only(env):
    su, tenant, sender = env
    admin = accounts.create_user(actor=su, username="hook-admin", password="Hook-Pass-2026", role=Role.ADMIN,
                                 node=tenant.root_node)
    manager = accounts.create_user(actor=su, username="hook-mgr", password="Hook-Pass-2026", role=Role.MANAGER,
                                   node=tenant.root_node, permissions=["send_sms", "view_sms", "send_bulk_sms"])
    api = APIClient()
    api.force_authenticate(admin)
    r = api.put("/api/v1/sms/webhook/", {"url": "https://crm.example.net/sms", "secret": "abc"}, format="json")
    assert r.status_code == 200 and r.json()["has_secret"] and "secret" not in r.json()
    assert WebhookEndpoint.objects.get(tenant=tenant).secret == "abc"
    assert api.put("/api/v1/sms/webhook/", {"url": "ftp://x"}, format="json").status_code == 400
    assert WebhookEndpoint.objects.get(tenant=tenant).url == "https://crm.example.net/sms"
    other = APIClient()
    other.force_authenticate(manager)
    assert other.put("/api/v1/sms/webhook/", {"url": "https://evil.example/x"}, format="json").status_code == 403
    assert other.get("/api/v1/sms/webhook/").status_code == 403
