"""Delivery-state normalisation (notifications.dlr): states, roll-up, retries, ids; SMPP receipts end to end."""
from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from notifications import dlr
from notifications.dlr import ErrorClass, RetryPolicy, State
from notifications.providers import build_provider
from notifications.smpp import DeliveryReceipt, Outcome, SubmitResult, parse_receipt
from tests.peers.smsc import SMSCSimulator

S = State


def receipt(stat=None, message_state=None, message_id="1"):
    return DeliveryReceipt(message_id=message_id, message_key=message_id, stat=stat, err=None, sub=None, dlvrd=None,
                           submit_date=None, done_date=None, text=None, message_state=message_state,
                           network_error_code=None, source_addr="8801711000001", destination_addr="ISP", raw="",
                           received_at=datetime.now(UTC))


@pytest.mark.parametrize(
    ("stat", "state"),
    [("DELIVRD", S.DELIVERED), ("UNDELIV", S.UNDELIVERED), ("EXPIRED", S.EXPIRED), ("REJECTD", S.REJECTED),
     ("DELETED", S.UNDELIVERED), ("UNKNOWN", S.UNKNOWN), ("ACCEPTD", S.SENT), ("ENROUTE", S.SENT),
     ("delivered", S.DELIVERED), (" undeliverable ", S.UNDELIVERED)],
)
def test_stat_words(stat, state):
    assert dlr.state_from_stat(stat) is state


def test_message_state_tlv_values_and_final_states():
    assert [dlr.state_from_message_state(v) for v in range(1, 9)] == [
        S.SENT, S.DELIVERED, S.EXPIRED, S.UNDELIVERED, S.UNDELIVERED, S.SENT, S.UNKNOWN, S.REJECTED]
    assert dlr.state_from_message_state(0) is None and dlr.state_from_message_state(None) is None
    assert dlr.state_from_stat("BOGUS") is None and dlr.state_from_stat(None) is None
    assert {s for s in State if dlr.is_final(s)} == {S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.UNKNOWN}


def test_tlv_is_preferred_over_the_receipt_text():
    fields = parse_receipt("id:0A1B stat:UNDELIV err:001", receipted_message_id="a1b", message_state=2)
    assert fields["id"] == "a1b" and fields["stat"] == "DELIVRD"
    assert dlr.receipt_state(receipt(stat="UNDELIV", message_state=2)) is S.DELIVERED
    assert dlr.receipt_state(receipt(stat="UNDELIV")) is S.UNDELIVERED
    assert dlr.receipt_state(receipt(stat=None)) is S.UNKNOWN  # nothing readable: final, not left waiting


@pytest.mark.parametrize(
    ("text", "submit", "done"),
    [
        ("id:1 sub:001 dlvrd:001 submit date:2611221030 done date:2611221031 stat:DELIVRD err:000 text:hi",
         datetime(2026, 11, 22, 10, 30, tzinfo=UTC), datetime(2026, 11, 22, 10, 31, tzinfo=UTC)),
        ("id:1 sub:001 dlvrd:001 submit date:261122103005 done date:261122103107 stat:DELIVRD err:000 text:hi",
         datetime(2026, 11, 22, 10, 30, 5, tzinfo=UTC), datetime(2026, 11, 22, 10, 31, 7, tzinfo=UTC)),
        ("id:1 submit date:26112 stat:DELIVRD", None, None),
    ],
    ids=["10-digit", "12-digit", "bad-date"],
)
def test_receipt_dates(text, submit, done):
    fields = parse_receipt(text)
    assert (fields["submit_date"], fields["done_date"]) == (submit, done)


def test_receipt_with_missing_fields():
    fields = parse_receipt("id:77 stat:EXPIRED")
    assert fields == {"id": "77", "sub": None, "dlvrd": None, "submit_date": None, "done_date": None,
                      "stat": "EXPIRED", "err": None, "text": None}
    assert parse_receipt("")["stat"] is None


@pytest.mark.parametrize(
    ("raw", "rule", "key"),
    [
        ("0A1B2C3", "lower+strip_zeros", "a1b2c3"),
        ("a1b2c3", "lower+strip_zeros", "a1b2c3"),
        ("000000000000A1B2C3", "strip_zeros+hex_to_dec", str(0xA1B2C3)),
        (str(0xA1B2C3), "dec_to_hex", "a1b2c3"),
        (10597059, "as_is", "10597059"),  # a JSON number from an HTTP provider
        (" 42 ", "strip_zeros", "42"),
        ("xyz", "hex_to_dec", None),  # the rule cannot convert it: no key, no guess
        ("", "as_is", None),
        (None, "as_is", None),
        (1.5, "as_is", None),
        (True, "as_is", None),
    ],
)
def test_message_key(raw, rule, key):
    assert dlr.message_key(raw, rule) == key


def test_message_key_unknown_rule_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown message id rule"):
        dlr.message_key("12", "upper")


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([S.DELIVERED, S.DELIVERED], S.DELIVERED),
        ([S.DELIVERED, S.SENT], S.SENT),
        ([S.DELIVERED, S.UNDELIVERED], S.UNDELIVERED),
        ([S.SENT, S.UNDELIVERED], S.UNDELIVERED),  # cannot be delivered whole any more
        ([S.EXPIRED, S.UNDELIVERED, S.DELIVERED], S.UNDELIVERED),
        ([S.EXPIRED, S.REJECTED], S.REJECTED),
        ([S.EXPIRED, S.DELIVERED], S.EXPIRED),
        ([S.QUEUED, S.SENT, S.DELIVERED], S.QUEUED),
        ([S.SUBMITTED, S.SENT], S.SUBMITTED),
        ([S.DELIVERED, S.UNKNOWN], S.UNKNOWN),
        ([S.UNKNOWN, S.SENT], S.SENT),
        (["delivered"], S.DELIVERED),
    ],
)
def test_rollup(parts, message):
    assert dlr.rollup(parts) is message


def test_rollup_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one part"):
        dlr.rollup([])


def test_advance_ignores_repeats_regressions_and_anything_after_final():
    assert dlr.advance(S.QUEUED, S.SENT) is S.SENT
    assert dlr.advance(S.SUBMITTED, S.DELIVERED) is S.DELIVERED  # an early receipt before the submit answer
    assert dlr.advance(S.SENT, S.SUBMITTED) is None  # the late submit answer does not move it back
    assert dlr.advance(S.SENT, S.SENT) is None
    assert dlr.advance(S.DELIVERED, S.DELIVERED) is None  # the same receipt twice
    assert dlr.advance(S.DELIVERED, S.UNDELIVERED) is None  # final is final
    assert dlr.advance(S.UNKNOWN, S.DELIVERED) is None


def test_state_and_error_class_of_a_submit_result():
    def result(outcome):
        return SubmitResult("r", 0, 1, outcome)

    assert [dlr.state_for_result(result(o)) for o in Outcome] == [S.SENT, S.QUEUED, S.REJECTED, S.SUBMITTED]
    assert [dlr.error_class_for_result(result(o)) for o in Outcome] == [
        None, ErrorClass.TEMPORARY, ErrorClass.PERMANENT, None]


def test_error_class_of_a_final_state():
    assert dlr.error_class_for_state(S.EXPIRED) is ErrorClass.TEMPORARY
    assert dlr.error_class_for_state(S.UNDELIVERED, "001") is ErrorClass.PERMANENT
    assert dlr.error_class_for_state(S.UNDELIVERED, "008", temporary_errors=["8"]) is ErrorClass.TEMPORARY
    assert dlr.error_class_for_state(S.REJECTED) is ErrorClass.PERMANENT
    assert dlr.error_class_for_state(S.DELIVERED) is None and dlr.error_class_for_state(S.SENT) is None


def test_retry_decision_per_error_class():
    policy = RetryPolicy.from_settings({"temporary": {"attempts": 3, "initial": 10, "factor": 3, "maximum": 25},
                                        "permanent": {"attempts": 2, "initial": 600}})
    assert [dlr.retry_decision("temporary", n, policy) for n in (1, 2, 3)] == [10, 25, None]
    assert [dlr.retry_decision(ErrorClass.PERMANENT, n, policy) for n in (1, 2)] == [600, None]
    assert dlr.retry_decision(None, 1, policy) is None
    only_temporary = RetryPolicy.from_settings({"temporary": {"attempts": 2}})
    assert dlr.retry_decision("permanent", 1, only_temporary) is None
    default = RetryPolicy()
    assert [dlr.retry_decision("temporary", n, default) for n in (1, 2, 3, 4)] == [60, 180, 540, None]
    assert dlr.retry_decision("permanent", 1, default) is None
    with pytest.raises(ValueError, match="starts at 1"):
        dlr.retry_decision("temporary", 0, default)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"transient": {"attempts": 2}}, "unknown error class 'transient'"),
        ({"temporary": {"tries": 2}}, "unknown retry setting\\(s\\) for temporary: tries"),
        ({"temporary": {"attempts": 0}}, "attempts must be >= 1"),
        ({"temporary": {"initial": 10, "maximum": 5}}, "maximum >= initial"),
    ],
)
def test_bad_retry_settings(config, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy.from_settings(config)


@pytest.mark.parametrize(
    ("answer_style", "receipt_style", "submit_rule", "receipt_rule", "tlvs", "digits"),
    [
        ("hex_upper", "hex_lower", "lower", "lower", True, 10),  # case
        ("decimal_zeros", "decimal", "strip_zeros", "as_is", False, 12),  # leading zeros, text only
        ("hex_upper_zeros", "decimal", "strip_zeros+hex_to_dec", "as_is", True, 12),  # hex vs decimal
    ],
    ids=["case", "zeros", "hex-vs-dec"],
)
def test_smpp_receipt_ids_match_the_submit_by_provider_rule(answer_style, receipt_style, submit_rule, receipt_rule,
                                                            tlvs, digits):
    got: list = []
    done = threading.Event()

    def on_receipt(_name, r):
        got.append(r)
        done.set()

    with SMSCSimulator("ispsms", "secret", id_style=answer_style) as smsc:
        smsc.configure(dlr="late", dlr_id_style=receipt_style, dlr_tlvs=tlvs, dlr_date_digits=digits,
                       dlr_stat="UNDELIV", dlr_err="008")
        provider = build_provider("smpp", "smsc", {
            "host": "127.0.0.1", "port": smsc.port, "system_id": "ispsms", "password": "secret",
            "submit_id_rule": submit_rule, "receipt_id_rule": receipt_rule}, on_receipt=on_receipt)
        try:
            [part] = [f.result(timeout=5) for f in provider.submit("8801711000001", "ISP", "hi", ref=1)]
            assert done.wait(5)
        finally:
            provider.stop()
    [r] = got
    assert part.message_id != r.message_id and part.message_key == r.message_key is not None
    assert dlr.receipt_state(r) is S.UNDELIVERED
    assert (r.message_state is not None) is tlvs
    assert abs((r.received_at - r.done_date).total_seconds()) < 120  # the date was read, 10 or 12 digits
    assert digits == 12 or r.done_date.second == 0
    assert dlr.error_class_for_state(dlr.receipt_state(r), r.err, temporary_errors=["8"]) is ErrorClass.TEMPORARY
