"""The HTTP SmsProvider against the local bulk-SMS HTTP API simulator (real HTTP on 127.0.0.1)."""
from __future__ import annotations

import base64
import socket
import threading
import time
from decimal import Decimal

import pytest

from notifications import dlr
from notifications.encoding import segment
from notifications.providers import (
    HttpProvider,
    ProviderConfigError,
    ProviderError,
    ProviderUnavailable,
    build_provider,
)
from notifications.smpp import Outcome
from tests.peers.sms_http import HttpSmsSimulator, WebhookReceiver

TOKEN = "test-token"
NUMBER = "8801711000001"


@pytest.fixture
def sim():
    with HttpSmsSimulator(TOKEN) as simulator:
        yield simulator


def bd(sim_or_url, **extra):
    base = sim_or_url if isinstance(sim_or_url, str) else sim_or_url.base_url
    return {"profile": "bd_bulk", "base_url": base, "credentials": {"api_token": TOKEN}, "recheck_after": 0.2,
            **extra}


def results(futures):
    assert all(f.done() for f in futures), "the HTTP provider resolves its futures before submit returns"
    return [f.result(timeout=0) for f in futures]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_accepted_message_reports_one_result_per_part_with_the_provider_id(sim):
    provider = build_provider("http", "bd", bd(sim))
    text = "Your bill of 500 Tk is due on 30 Nov. " * 5  # 190 GSM-7 characters: 2 parts
    assert segment(text).count == 2
    parts = results(provider.submit(NUMBER, "DhakaFiber", text, ref="msg-1"))
    assert [(p.part_index, p.part_count, p.outcome) for p in parts] == [(0, 2, Outcome.ACCEPTED), (1, 2, Outcome.ACCEPTED)]
    # Answer id 0000000000A1B2C3 normalised by the profile's rule lower+strip_zeros.
    assert {p.message_id for p in parts} == {"0000000000A1B2C3"} and {p.message_key for p in parts} == {"a1b2c3"}
    assert all(p.ref == "msg-1" and p.written for p in parts)
    # The whole text went in one request, with the client reference.
    [sent] = sim.messages
    assert (sent.msisdn, sent.sid, sent.text, sent.csms_id, sent.parts) == (NUMBER, "DhakaFiber", text, "msg-1", 2)
    assert sim.balance == Decimal("1000.00") - 2 * Decimal("0.25")


def test_bangla_text_is_sent_intact(sim):
    provider = HttpProvider("bd", bd(sim))
    text = "আপনার বিল ৫০০ টাকা পরিশোধিত হয়েছে। ধন্যবাদ!"
    [part] = results(provider.submit(NUMBER, "DhakaFiber", text, ref=7))
    assert part.outcome is Outcome.ACCEPTED and part.ref == 7
    assert sim.texts(NUMBER) == [text]


def test_rejected_number_is_permanent_with_the_providers_error(sim):
    provider = HttpProvider("bd", bd(sim))
    [bad] = results(provider.submit("8801911", "DhakaFiber", "hello", ref="r1"))
    assert bad.outcome is Outcome.PERMANENT
    assert bad.error == "4020: Invalid MSISDN 8801911" and bad.message_id is None
    sim.configure(NUMBER, action="reject", reject_message="Number is in DND list")
    [blocked] = results(provider.submit(NUMBER, "DhakaFiber", "hello", ref="r2"))
    assert blocked.outcome is Outcome.PERMANENT and blocked.error == "4020: Number is in DND list"
    assert sim.messages == [] and provider.available  # a rejection says nothing about the route


def test_throttling_is_temporary_by_http_429_and_by_code(sim):
    provider = HttpProvider("bd", bd(sim))
    sim.throttle_next(1)
    [first] = results(provider.submit(NUMBER, "ISP", "one", ref=1))
    assert first.outcome is Outcome.TEMPORARY and first.command_status == 429
    sim.configure(action="throttle_code")
    [second] = results(provider.submit(NUMBER, "ISP", "two", ref=2))
    assert second.outcome is Outcome.TEMPORARY and second.error.startswith("4029")
    assert dlr.retry_decision(dlr.error_class_for_result(second), 1, dlr.RetryPolicy()) == 60.0
    sim.configure(action="accept")
    [third] = results(provider.submit(NUMBER, "ISP", "three", ref=3))
    assert third.outcome is Outcome.ACCEPTED and sim.texts(NUMBER) == ["three"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda sim: sim.configure(action="error5xx"), "HTTP 503 from the provider"),
        (lambda sim: setattr(sim, "api_token", "rotated"), r"authentication failed \(HTTP 401\)"),
        (lambda sim: sim.configure(action="provider_error"), "provider error 4025: Insufficient balance"),
    ],
    ids=["5xx", "auth", "provider-level"],
)
def test_provider_failures_raise_unavailable_and_mark_it_down(sim, setup, message):
    provider = HttpProvider("bd", bd(sim))
    setup(sim)
    with pytest.raises(ProviderUnavailable, match=f"bd: {message}"):
        provider.submit(NUMBER, "ISP", "hello", ref=1)
    assert not provider.available
    assert sim.messages == []
    time.sleep(0.25)  # recheck_after
    assert provider.available


def test_request_the_provider_cannot_read_is_a_provider_level_error(sim):
    # A params template that misses a field the API needs is our configuration, not the message.
    provider = HttpProvider("bd", bd(sim, params={"api_token": "{api_token}", "msisdn": "{to}", "sms": "{text}",
                                                  "csms_id": "{ref}"}))
    with pytest.raises(ProviderUnavailable, match="provider error 4010: missing field\\(s\\): sid"):
        provider.submit(NUMBER, "ISP", "hello", ref=1)
    assert sim.messages == []


def test_connection_refused_is_unavailable():
    provider = HttpProvider("bd", bd(f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        provider.submit(NUMBER, "ISP", "hello", ref=1)
    assert not provider.available


def test_no_answer_is_unknown_without_client_reference_dedup(sim):
    provider = HttpProvider("bd", bd(sim, dedup=False, timeout=0.2))
    sim.delay_next(1, 0.6)
    [part] = results(provider.submit(NUMBER, "ISP", "slow", ref="s1"))
    assert part.outcome is Outcome.UNKNOWN and part.written
    assert dlr.error_class_for_result(part) is None  # never retried blindly
    assert sim.wait_for(lambda: len(sim.requests) == 1)
    time.sleep(0.1)
    assert len(sim.requests) == 1 and len(sim.messages) == 1


def test_duplicate_client_reference_is_not_sent_twice(sim):
    provider = HttpProvider("bd", bd(sim, timeout=0.6))
    # The first request gets no answer in time; with dedup the provider asks again on a fresh
    # connection with the same csms_id; the simulator sends the message once.
    sim.delay_next(1, 1.5)
    [part] = results(provider.submit(NUMBER, "ISP", "Payment received", ref="pay-42"))
    assert part.outcome is Outcome.ACCEPTED and part.message_key == "a1b2c3"
    assert sim.wait_for(lambda: len(sim.requests) == 2, timeout=3)
    assert [r.params["csms_id"] for r in sim.requests] == ["pay-42", "pay-42"]
    assert [r.answer["status_code"] for r in sim.requests] == [200, 4022]  # the late first one is the duplicate
    assert sim.texts(NUMBER) == ["Payment received"]
    # And a caller that repeats the submit itself gets the same id back, nothing sent again.
    [again] = results(provider.submit(NUMBER, "ISP", "Payment received", ref="pay-42"))
    assert again.outcome is Outcome.ACCEPTED and again.message_key == part.message_key
    assert "duplicate reference" in again.error
    assert len(sim.messages) == 1 and sim.balance == Decimal("999.75")


def test_split_per_part_sends_each_part_with_its_own_reference(sim):
    provider = HttpProvider("bd", bd(sim, split="part"))
    text = "x" * 200
    parts = results(provider.submit(NUMBER, "ISP", text, ref="long"))
    assert [p.outcome for p in parts] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert len({p.message_key for p in parts}) == 2
    assert [(m.csms_id, m.text) for m in sim.messages] == [("long-1", "x" * 153), ("long-2", "x" * 47)]


def test_bad_input_is_refused_before_anything_is_sent(sim):
    provider = HttpProvider("bd", bd(sim))
    with pytest.raises(ValueError, match="destination"):
        provider.submit("+88 017", "ISP", "hello", ref=1)
    with pytest.raises(ValueError, match="parts"):
        provider.submit(NUMBER, "ISP", "y" * 2000, ref=2)
    assert sim.requests == []


def test_generic_get_query_text_regex_and_basic_auth(sim):
    settings = {
        "url": f"{sim.base_url}/api/v3/send-sms?api_token={TOKEN}",
        "method": "GET",
        "params": {"sid": "{from}", "msisdn": "{to}", "sms": "{text}", "csms_id": "ref-{ref}"},
        "auth": "basic",
        "credentials": {"username": "isp", "password": "pa:ss"},
        "response": {"format": "text", "status": r'"status_code": (\d+)', "message_id": r'"reference_id": "(\w+)"',
                     "error": r'"error_message": "([^"]*)"', "success": ["200"]},
        "id_rule": "strip_zeros+hex_to_dec",
    }
    provider = build_provider("http", "generic", settings)
    [ok] = results(provider.submit(NUMBER, "8809612345678", "hi & bye?", ref=5))
    assert ok.outcome is Outcome.ACCEPTED and ok.message_key == str(0xA1B2C3)
    [request] = sim.requests
    assert request.method == "GET" and request.params["csms_id"] == "ref-5" and request.params["sms"] == "hi & bye?"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"isp:pa:ss").decode()
    [bad] = results(provider.submit("8801", "ISP", "hi", ref=6))
    assert bad.outcome is Outcome.PERMANENT and bad.error == "4020: Invalid MSISDN 8801"


def test_bearer_auth_header(sim):
    provider = HttpProvider("bd", bd(sim, auth="bearer", credentials={"api_token": TOKEN, "token": "tok-1"}))
    results(provider.submit(NUMBER, "ISP", "hello", ref=1))
    assert sim.requests[0].headers["Authorization"] == "Bearer tok-1"


def test_balance_call(sim):
    provider = HttpProvider("bd", bd(sim))
    assert provider.balance() == Decimal("1000.00")
    results(provider.submit(NUMBER, "ISP", "hello", ref=1))
    assert provider.balance() == Decimal("999.75")
    sim.api_token = "other"
    with pytest.raises(ProviderUnavailable, match="balance call answered HTTP 401"):
        provider.balance()
    no_balance = HttpProvider("plain", bd(sim, balance=None))
    assert no_balance.balance() is None
    wrong_path = HttpProvider("odd", bd(sim, balance={"path": "credit"}))
    sim.api_token = TOKEN
    with pytest.raises(ProviderError, match="without a readable amount"):
        wrong_path.balance()


def test_window_caps_requests_in_flight(sim):
    provider = HttpProvider("bd", bd(sim, window=3))
    sim.configure(delay=0.05)
    threads = [threading.Thread(target=lambda i=i: provider.submit(NUMBER, "ISP", f"m{i}", ref=i)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(sim.messages) == 12
    assert provider.max_in_flight == 3 and sim.max_concurrent == 3


def test_rate_limit_is_honoured_over_a_few_hundred_messages(sim):
    rate, count = 200.0, 300
    provider = HttpProvider("bd", bd(sim, max_rate=rate, burst=5, window=8))
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        for i in range(start, count, 4):
            results(provider.submit(NUMBER, "ISP", f"m{i}", ref=i))
            with lock:
                stamps.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - began
    assert len(sim.messages) == count
    # At most burst + rate * T in any T: 300 messages need at least (300 - 5) / 200 s.
    assert elapsed >= (count - 5) / rate * 0.98
    stamps.sort()
    for i in range(len(stamps) - 100):
        assert stamps[i + 100] - stamps[i] >= (100 - 5) / rate * 0.95


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"profile": "acme"}, "unknown HTTP profile 'acme'"),
        ({"profile": "bd_bulk"}, "url needs setting\\(s\\) base_url"),
        ({"url": "ftp://x/send"}, "must be an http\\(s\\) URL"),
        ({"url": "http://x/send", "params": {"to": "{phone}"}}, "unknown placeholder\\(s\\) phone"),
        ({"url": "http://x/send", "colour": "red"}, "unknown HTTP setting\\(s\\): colour"),
        ({"url": "http://x/send", "auth": "basic"}, "basic auth needs credentials"),
        ({"url": "http://x/send", "response": {"status": "code"}}, "response.success must list"),
        ({"url": "http://x/send", "response": {"format": "text", "status": "(a)(b)", "success": ["1"]}},
         "exactly one group"),
        ({"url": "http://x/send", "id_rule": "upper"}, "unknown message id rule"),
        ({"url": "http://x/send", "window": 0}, "window must be >= 1"),
        ({"url": "http://x/send", "split": "bytes"}, "split must be"),
        ({"url": "http://x/send", "method": "GET", "body": "json"}, "body must be query"),
        ({"url": "http://x/send", "callback": {"states": {"OK": "great"}}}, "bad callback setting"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(config, message):
    with pytest.raises(ProviderConfigError, match=message):
        build_provider("http", "p", config)


# -- webhooks ---------------------------------------------------------------------------------------


def receiving(sim, **extra):
    """A provider whose on_receipt / on_incoming collect events, with a webhook endpoint wired to the simulator."""
    events: list = []
    provider = HttpProvider("bd", bd(sim, **extra), on_receipt=lambda name, r: events.append((name, r)),
                            on_incoming=lambda name, m: events.append((name, m)))
    receiver = WebhookReceiver(provider.handle_callback)
    sim.callback_url = receiver.url
    return provider, receiver, events


def test_late_dlr_matches_the_submit_despite_different_id_spelling(sim):
    provider, receiver, events = receiving(sim)
    sim.configure(dlr="late", dlr_delay=0.05)
    with receiver:
        [part] = results(provider.submit(NUMBER, "ISP", "hello", ref="m1"))
        assert sim.wait_for(lambda: len(events) == 1)
    name, receipt = events[0]
    assert name == "bd" and part.message_id == "0000000000A1B2C3" and receipt.message_id == "a1b2c3"
    assert receipt.message_key == part.message_key == "a1b2c3"
    assert receipt.client_ref == "m1" and receipt.source_addr == NUMBER
    assert receipt.stat == "DELIVRD" and dlr.receipt_state(receipt) is dlr.State.DELIVERED
    assert receipt.done_date.utcoffset().total_seconds() == 6 * 3600  # naive provider time read as Asia/Dhaka


def test_early_dlr_arrives_before_the_submit_returns_and_twice(sim):
    provider, receiver, events = receiving(sim)
    sim.configure(dlr="early", dlr_twice=True, dlr_delay=0.1, dlr_status="Undelivered", dlr_error="0012")
    with receiver:
        [part] = results(provider.submit(NUMBER, "ISP", "hello", ref="m2"))
        assert len(events) == 1  # pushed (and handled) before the send request was answered
        assert sim.wait_for(lambda: len(events) == 2)
    keys = {r.message_key for _, r in events}
    assert keys == {part.message_key}
    state = dlr.state_for_result(part)
    assert state is dlr.State.SENT
    changes = []
    for _, receipt in events:
        new = dlr.advance(state, dlr.receipt_state(receipt))
        changes.append(new)
        state = new or state
    assert changes == [dlr.State.UNDELIVERED, None]  # the second copy changes nothing
    assert events[0][1].err == "0012"


def test_incoming_sms_by_webhook(sim):
    provider, receiver, events = receiving(sim)
    with receiver:
        assert sim.push_mo("8801811000002", "8809612345678", "BAL") == 200
        assert sim.push_mo("8801811000003", "8809612345678", "বিল কত?") == 200
    [(_, first), (_, second)] = events
    assert (first.source_addr, first.destination_addr, first.text, first.data_coding) == (
        "8801811000002", "8809612345678", "BAL", 0x00)
    assert second.text == "বিল কত?" and second.data_coding == 0x08 and second.complete


def test_bad_webhook_is_refused_with_a_clear_error(sim):
    provider, receiver, events = receiving(sim)
    with receiver:
        assert sim.push_dlr("", "Delivered") == 400
        assert sim.push_dlr("abc", "") == 400
    assert receiver.errors == ["delivery report without 'reference_id' or 'csms_id'",
                               "delivery report without 'status'"]
    assert events == []
    with pytest.raises(ValueError, match="must be an object"):
        provider.handle_callback(["not", "a", "mapping"])


def test_webhook_status_words_map_to_states(sim):
    provider = HttpProvider("bd", bd(sim))
    expected = {"Delivered": dlr.State.DELIVERED, "failed": dlr.State.UNDELIVERED, "EXPIRED": dlr.State.EXPIRED,
                "Rejected": dlr.State.REJECTED, "Pending": dlr.State.SENT, "REJECTD": dlr.State.REJECTED,
                "whatever": dlr.State.UNKNOWN}
    for word, state in expected.items():
        [receipt] = provider.handle_callback({"reference_id": "00FF", "status": word})
        assert dlr.receipt_state(receipt) is state, word
        assert receipt.message_key == "ff"
    # A form-encoded webhook parsed into one-item lists reads the same.
    [form] = provider.handle_callback({"reference_id": ["00FF"], "status": ["Expired"], "csms_id": ["m9"]})
    assert (form.message_key, dlr.receipt_state(form), form.client_ref) == ("ff", dlr.State.EXPIRED, "m9")
