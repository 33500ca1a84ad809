"""Storing incoming texts: which line (and tenant) a text belongs to, whatever the provider says."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifications.inbox import store_incoming
from notifications.models import InboundMessage, SenderId
from notifications.smpp import IncomingMessage
from tests.notifications.smscore_support import make_super, make_tenant

pytestmark = pytest.mark.django_db


def mo(source: str, dest: str, text: str = "BAL") -> IncomingMessage:
    return IncomingMessage(source_addr=source, destination_addr=dest, text=text, data_coding=0, part_count=1,
                           complete=True, decode_error=None, received_at=datetime.now(UTC))


@pytest.fixture
def lines():
    su = make_super()
    tenant, route = make_tenant(su, "isp-store", credit_amount=None)
    line = SenderId.objects.create(tenant=tenant, value="8809612000777", line_type="dedicated", route=route)
    return tenant, route, line


def test_by_destination_number_with_or_without_plus(lines):
    tenant, route, line = lines
    for dest in ("8809612000777", "+8809612000777"):
        row = store_incoming("any-provider", mo("8801711000001", dest))
        assert (row.tenant, row.line, row.status) == (tenant, line, InboundMessage.Status.NEW)


def test_no_destination_falls_back_to_the_routes_only_dedicated_line(lines):
    tenant, route, line = lines
    row = store_incoming(route.name, mo("01711000001", ""))
    assert (row.tenant, row.line) == (tenant, line)
    # two dedicated lines on the route: ambiguous, kept without a tenant rather than guessed
    SenderId.objects.create(tenant=tenant, value="8809612000778", line_type="dedicated", route=route)
    row = store_incoming(route.name, mo("01711000001", ""))
    assert row.tenant is None and row.status == InboundMessage.Status.IGNORED


def test_unknown_destination_is_kept_without_a_tenant(lines):
    row = store_incoming("other", mo("8801711000001", "8809999999999", "hello"))
    assert row.tenant is None and row.line is None and row.status == "ignored" and row.text == "hello"


def test_shared_lines_have_no_inbox(lines):
    tenant, route, line = lines
    SenderId.objects.filter(pk=line.pk).update(line_type="shared")
    row = store_incoming("x", mo("8801711000001", "8809612000777"))
    assert row.tenant is None


def test_a_destination_that_is_no_line_is_not_guessed_from_the_route(lines):
    tenant, route, line = lines
    row = store_incoming(route.name, mo("8801711000001", "8809999999999"))
    assert row.tenant is None and row.line is None
