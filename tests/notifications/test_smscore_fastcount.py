"""The campaign fast paths give exactly what the slow, general code gives."""
from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.encoding import SegmentationError, segment
from notifications.fastcount import count_parts
from notifications.numbers import fast_e164

ALPHABET = "abcXYZ 0123{}[]~€ñÄ@\n\\^|" + "অআকখগঘ্া।" + "😀é"


def _slow(text):
    try:
        seg = segment(text)
        return seg.encoding, seg.count
    except SegmentationError as exc:
        return type(exc)


def _fast(text):
    try:
        return count_parts(text)
    except SegmentationError as exc:
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=800))
def test_count_parts_equals_segment(text):
    assert _fast(text) == _slow(text)


@pytest.mark.parametrize("text", ["", "a" * 160, "a" * 161, "অ" * 70, "অ" * 71, "অ" * 670, "অ" * 671, "{" * 80,
                                  "😀" * 35, "😀" * 36])
def test_count_parts_boundaries(text):
    assert _fast(text) == _slow(text)


@settings(max_examples=400, deadline=None)
@given(st.from_regex(r"\A(\+?88)?01[0-9]{9}\Z|\A[0-9+ ]{5,15}\Z"))
def test_bd_fast_path_agrees_with_phonenumbers(raw):
    fast = fast_e164(raw, "BD")
    if fast is None:
        return  # the caller asks phonenumbers
    parsed = phonenumbers.parse(raw, "BD")
    assert phonenumbers.is_valid_number(parsed)
    assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
    assert fast == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    assert fast_e164(raw, "IN") is None
