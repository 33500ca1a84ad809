"""Campaign rules: numbers, duplicates, opt-outs (STOP), quiet hours, the Bangla rule,
pause/resume/cancel with exact refunds, scheduling, templates, audiences, uploads."""
from __future__ import annotations

import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from notifications import credit, reports
from notifications.audiences import parse_upload
from notifications.campaigns import (
    cancel_campaign,
    create_campaign,
    pause_campaign,
    progress,
    resume_campaign,
    start_campaign,
    start_due_campaigns,
)
from notifications.models import Campaign, Message, SmsProfile
from notifications.services import add_members, create_group, opt_in, opt_out, queue_message, save_template
from notifications.worker import Sender, build_route_providers, claim
from tests.notifications.smscore_support import make_super, make_tenant
from tests.peers.smsc import SMSCSimulator

S = Campaign.Status
M = Message.State


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


def numbers(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(n)]


def run_until(sender, predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.run_once()
        reports.apply_reports()
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db
def test_materialise_normalises_reports_invalid_and_drops_duplicates():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-num")
    raw = ["01711000001", "+8801711000001", "8801711000002", "12345", "not a number", "01711000003"]
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="n", body="বিল {name}",
                                       audience={"kind": "numbers", "numbers": raw}), actor=su)
    assert (c.total, c.invalid_count, c.duplicate_count) == (3, 2, 1)
    assert sorted(Message.objects.filter(campaign=c).values_list("to_number", flat=True)) == [
        "+8801711000001", "+8801711000002", "+8801711000003"]
    assert sorted(r[0] for r in c.report["invalid"]) == ["12345", "not a number"]
    assert c.cost_held == Decimal("1.05") and credit.held(tenant.pk) == Decimal("1.05")
    assert c.status == S.RUNNING


@pytest.mark.django_db
def test_bangla_rule_for_promotional_only_and_switchable():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-bn")
    audience = {"kind": "numbers", "numbers": ["01711000001"]}
    with pytest.raises(ValidationError) as info:
        create_campaign(tenant=tenant, actor=su, name="p", body="Big offer!", audience=audience)
    assert "Bangla" in str(info.value)
    create_campaign(tenant=tenant, actor=su, name="notice", body="Maintenance tonight", audience=audience,
                    promotional=False)
    create_campaign(tenant=tenant, actor=su, name="mixed", body="Big offer! অফার", audience=audience)
    SmsProfile.objects.filter(tenant=tenant).update(require_bangla=False)
    create_campaign(tenant=tenant, actor=su, name="p2", body="Big offer!", audience=audience)


@pytest.mark.django_db
def test_template_placeholders_are_validated_on_save():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-tpl")
    ok = save_template(tenant=tenant, actor=su, name="due", body="প্রিয় {name}, বকেয়া {due} টাকা, মেয়াদ {expiry}")
    assert ok.pk
    with pytest.raises(ValidationError) as info:
        save_template(tenant=tenant, actor=su, name="bad", body="Hi {nmae}, due {due}")
    assert "{nmae}" in str(info.value.message_dict["body"]) and "{name}" in str(info.value.message_dict["body"])
    for body in ("Hi {name", "Hi {0}", "Hi {name!r}", "Hi {due:>10}", "Hi {name.upper}"):
        with pytest.raises(ValidationError):
            save_template(tenant=tenant, actor=su, name=f"b{len(body)}", body=body)
    assert save_template(tenant=tenant, actor=su, name="brace", body="Use {{code}} as is, {name}").pk


@pytest.mark.django_db
def test_personalised_text_from_customer_fields_and_dynamic_audience():
    from ispcore.accounts.roles import NodeKind
    from ispcore.accounts.services import create_node
    from ispcore.billing.services import open_wallet, post_transaction, set_credit_limit, system_wallet
    from ispcore.subscribers import services as subscribers

    su = make_super()
    tenant, _ = make_tenant(su, "isp-aud")
    reseller = create_node(actor=su, parent=tenant.root_node, kind=NodeKind.RESELLER, name="R")
    zone = subscribers.create_zone(actor=su, tenant=tenant, name="Mirpur")
    soon = timezone.now() + timedelta(days=2)
    late = timezone.now() + timedelta(days=20)
    made = {}
    for i, (node, exp, owe) in enumerate([(reseller, soon, "250"), (reseller, late, "0"), (tenant.root_node, soon, "900")]):
        c = subscribers.create_customer(actor=su, tenant=tenant, node=node, username=f"u{i}", password="pw1234",
                                        customer_type="pppoe", full_name=f"Karim {i}", mobile=f"0171900000{i}",
                                        expires_at=exp, zone=zone)
        w = set_credit_limit(open_wallet(tenant=tenant, customer=c), 1000, actor=su)
        if owe != "0":
            post_transaction(legs=[(w, -Decimal(owe)), (system_wallet(tenant, "adjustment"), Decimal(owe))],
                             kind="test", idempotency_key=f"owe{i}")
        made[i] = c
    audience = {"kind": "customers", "node": reseller.pk, "expiring_within_days": 3}
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="due", promotional=False,
                                       body="প্রিয় {name}, বকেয়া {due} টাকা ({zone})", audience=audience), actor=su)
    assert list(Message.objects.filter(campaign=c).values_list("text", flat=True)) == [
        "প্রিয় Karim 0, বকেয়া 250 টাকা (Mirpur)"]
    due_all = start_campaign(create_campaign(tenant=tenant, actor=su, name="due>100", promotional=False,
                                             body="{username}: {due}", audience={"kind": "customers", "due_gt": "100"}),
                             actor=su)
    assert sorted(Message.objects.filter(campaign=due_all).values_list("text", flat=True)) == ["u0: 250", "u2: 900"]
    bad = create_campaign(tenant=tenant, actor=su, name="x", body="{name}", promotional=False,
                          audience={"kind": "customers", "colour": "red"})
    with pytest.raises(ValidationError, match="colour"):
        start_campaign(bad, actor=su)


@pytest.mark.django_db
def test_groups_and_uploads():
    import openpyxl

    su = make_super()
    tenant, _ = make_tenant(su, "isp-grp")
    g = create_group(tenant=tenant, actor=su, name="VIP", numbers=["01711000001", "01711000001", "bad"])
    assert list(g.members.values_list("number", flat=True)) == ["+8801711000001"]
    assert add_members(g, ["01711000002"], actor=su)["added"] == 1
    csv_numbers = parse_upload(b"name,mobile\nA,01711000003\nB,+8801711000004\n", "list.csv")
    assert csv_numbers == ["01711000003", "+8801711000004"]
    book = openpyxl.Workbook()
    book.active.append(["Phone"])
    book.active.append([8801711000005])
    buf = io.BytesIO()
    book.save(buf)
    assert parse_upload(buf.getvalue(), "list.xlsx") == ["8801711000005"]
    with pytest.raises(ValidationError):
        parse_upload(b"\x00\x01", "list.pdf")
    with pytest.raises(ValidationError):
        parse_upload(b"garbage", "list.xlsx")
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="g", body="অফার {name}",
                                       audience={"kind": "group", "group": g.pk}), actor=su)
    assert c.total == 2 and c.group_id == g.pk


@pytest.mark.django_db(transaction=True)
def test_stop_is_honoured_by_the_next_promotional_campaign_not_by_transactional(sim):
    su = make_super()
    tenant, route = make_tenant(su, "isp-stop", port=sim.port)
    nums = numbers("0171", 3)
    opt_out(tenant, nums[1])
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="promo", body="অফার!",
                                       audience={"kind": "numbers", "numbers": nums}), actor=su)
    assert (c.total, c.opted_out_count) == (2, 1)
    # opted out after materialising: blocked at send time and refunded
    opt_out(tenant, nums[2])
    notice = queue_message(tenant=tenant, to=nums[1], text="Payment received", actor=su)
    sender = Sender(build_route_providers([route]), name="w", submit_timeout=5)
    sender.start()
    try:
        assert run_until(sender, lambda: not Message.objects.filter(state__in=[M.QUEUED, M.SUBMITTING]).exists())
    finally:
        sender.stop()
    assert sorted(r.destination_addr for r in sim.submits) == ["8801710000000", "8801710000001"]
    assert Message.objects.get(campaign=c, to_number="+8801710000002").state == M.BLOCKED
    assert Message.objects.get(pk=notice.pk).state == M.SUBMITTED
    assert credit.held(tenant.pk) == Decimal("0.00")
    assert credit.balance(tenant.pk) == Decimal("1000.00") - Decimal("0.70")
    assert opt_in(tenant, nums[1]) is True
    c2 = start_campaign(create_campaign(tenant=tenant, actor=su, name="promo2", body="অফার!",
                                        audience={"kind": "numbers", "numbers": nums}), actor=su)
    assert (c2.total, c2.opted_out_count) == (2, 1)


@pytest.mark.django_db
def test_quiet_hours_hold_promotional_campaigns_only():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-quiet")
    local = timezone.localtime(timezone.now(), tenant.tzinfo)
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    SmsProfile.objects.filter(tenant=tenant).update(quiet_start=start, quiet_end=end)
    promo = start_campaign(create_campaign(tenant=tenant, actor=su, name="p", body="অফার",
                                           audience={"kind": "numbers", "numbers": ["01711000001"]}), actor=su)
    notice = start_campaign(create_campaign(tenant=tenant, actor=su, name="n", body="Outage tonight",
                                            promotional=False,
                                            audience={"kind": "numbers", "numbers": ["01711000002"]}), actor=su)
    claimed = claim("w", 10)
    assert [m.campaign_id for m in claimed] == [notice.pk]
    SmsProfile.objects.filter(tenant=tenant).update(quiet_start=None, quiet_end=None)
    assert [m.campaign_id for m in claim("w", 10)] == [promo.pk]


@pytest.mark.django_db
def test_pause_resume_cancel_and_schedule():
    su = make_super()
    tenant, _ = make_tenant(su, "isp-ctl")
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="c", body="অফার",
                                       audience={"kind": "numbers", "numbers": numbers("0171", 10)}), actor=su)
    assert credit.held(tenant.pk) == Decimal("3.50")
    pause_campaign(c, actor=su)
    assert claim("w", 100) == []
    resume_campaign(c, actor=su)
    first = claim("w", 4)
    assert len(first) == 4
    cancelled = cancel_campaign(c, actor=su)
    assert cancelled.status == S.CANCELLED
    assert Message.objects.filter(campaign=c, state=M.CANCELLED).count() == 6
    # the six unsent are refunded at once; the four claimed stay held until their result
    assert credit.held(tenant.pk) == Decimal("1.40")
    assert credit.balance(tenant.pk) == Decimal("998.60")
    assert progress(cancelled)["refunded"] == Decimal("2.10")
    with pytest.raises(ValidationError):
        resume_campaign(cancelled, actor=su)
    later = timezone.now() + timedelta(hours=2)
    s = start_campaign(create_campaign(tenant=tenant, actor=su, name="s", body="অফার", scheduled_at=later,
                                       audience={"kind": "numbers", "numbers": ["01711000001"]}), actor=su)
    assert s.status == S.SCHEDULED and claim("w", 10) == []
    assert start_due_campaigns(now=later + timedelta(seconds=1)) == 1
    assert [m.campaign_id for m in claim("w", 10)] == [s.pk]


@pytest.mark.django_db
def test_sender_id_rules():
    from notifications.numbers import validate_sender_id
    from notifications.services import create_sender

    assert validate_sender_id("DhakaNet") == "DhakaNet"
    assert validate_sender_id("8801711000000") == "8801711000000"
    for bad in ("", "TwelveChars1", "12345678901234567", "!!!", "১২৩"):
        with pytest.raises(ValidationError):
            validate_sender_id(bad)
    su = make_super()
    tenant, _ = make_tenant(su, "isp-snd")
    from ispcore.accounts import services as accounts
    from ispcore.accounts.roles import Role

    mgr = accounts.create_user(actor=su, username="mgr", password="Pass-1234-x", role=Role.MANAGER,
                               node=tenant.root_node, permissions=["send_sms"])
    line = create_sender(tenant=tenant, actor=su, value="Private", open_to_all=False)
    with pytest.raises(ValidationError):
        queue_message(tenant=tenant, to="01711000001", text="hi", actor=mgr, sender="Private")
    line.allowed_users.add(mgr)
    assert queue_message(tenant=tenant, to="01711000001", text="hi", actor=mgr, sender="Private").sender == "Private"


@pytest.mark.django_db
def test_claimed_messages_of_a_cancelled_campaign_are_not_queued_again():
    from notifications.smpp import Outcome, SubmitResult
    from notifications.worker import record_results

    su = make_super()
    tenant, _ = make_tenant(su, "isp-cxl", retry_count=3)
    c = start_campaign(create_campaign(tenant=tenant, actor=su, name="c", body="অফার",
                                       audience={"kind": "numbers", "numbers": numbers("0171", 3)}), actor=su)
    claimed = claim("w", 10)
    cancel_campaign(c, actor=su)
    assert credit.held(tenant.pk) == Decimal("1.05")  # claimed: still in flight
    results = {m.pk: (None, [SubmitResult(m.pk, 0, 1, Outcome.TEMPORARY, error="throttled")], "") for m in claimed}
    assert record_results("w", results) == {"cancelled": 3}
    assert set(Message.objects.filter(campaign=c).values_list("state", flat=True)) == {M.CANCELLED}
    assert credit.held(tenant.pk) == Decimal("0.00") and credit.balance(tenant.pk) == Decimal("1000.00")
