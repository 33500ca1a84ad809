"""Tests for notifications.encoding: shared vectors, properties, wire helpers."""

from __future__ import annotations

import itertools
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications import encoding as enc
from notifications.encoding import (
    ESM_CLASS_UDHI,
    MAX_PARTS,
    Segmentation,
    SegmentationError,
    TooManyPartsError,
    concat_udh,
    contains_bangla,
    cost,
    data_coding,
    decode_gsm7,
    decode_ucs2,
    encode_part,
    segment,
)

# Written out independently of the module's table so the tests are not
# circular: GSM 03.38 basic set (without the escape) and extension table.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\f"
GSM_ALL = frozenset(GSM_BASIC + GSM_EXTENSION)
LIMITS = {"gsm7": (160, 153), "ucs2": (70, 67)}

# Hypothesis must not write a .hypothesis/ database into the project tree.
PROPERTY = settings(max_examples=400, deadline=None, database=None)


# --------------------------------------------------------------------------
# Shared vectors
# --------------------------------------------------------------------------

VECTOR_FIELDS = {"note", "text", "encoding", "parts", "part_texts", "part_units", "error"}


def _vectors_path() -> Path:
    primary = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "sms_segments.json"
    if primary.is_file():
        return primary
    shared = os.environ.get("SHARED_DIR")
    if shared:
        fallback = Path(shared) / "testdata" / "sms_segments.json"
        if fallback.is_file():
            return fallback
    # Fail loudly: silently skipping would hide that nothing was checked.
    raise FileNotFoundError(f"sms_segments.json not found at {primary} or via $SHARED_DIR")


def _load_vectors() -> list[dict]:
    with _vectors_path().open(encoding="utf-8") as fh:
        return json.load(fh)["vectors"]


VECTORS = _load_vectors()


def _expects_error(vector: dict) -> bool:
    return (
        "error" in vector
        or vector["text"] == ""
        or not vector.get("parts")
        or vector.get("encoding") is None
    )


def test_vectors_file_is_usable() -> None:
    assert VECTORS, "no vectors in sms_segments.json"
    notes = [v["note"] for v in VECTORS]
    assert len(notes) == len(set(notes)), "vector notes must be unique (they are test ids)"
    for vector in VECTORS:
        # An unknown field would mean a new expectation this test ignores.
        assert set(vector) <= VECTOR_FIELDS, vector["note"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["note"] for v in VECTORS])
def test_vector(vector: dict) -> None:
    if _expects_error(vector):
        with pytest.raises(SegmentationError):
            segment(vector["text"])
        return
    result = segment(vector["text"])
    assert result.encoding == vector["encoding"]
    assert result.count == vector["parts"]
    assert result.parts == vector["part_texts"]
    assert result.units == vector["part_units"]
    assert "".join(result.parts) == vector["text"]


def test_limits_match_vectors_about() -> None:
    assert (enc.GSM7_SINGLE_PART, enc.GSM7_MULTI_PART) == LIMITS["gsm7"]
    assert (enc.UCS2_SINGLE_PART, enc.UCS2_MULTI_PART) == LIMITS["ucs2"]


# --------------------------------------------------------------------------
# segment(): examples
# --------------------------------------------------------------------------


def test_segment_unpacks_as_named_tuple() -> None:
    encoding, parts = segment("hello")
    assert (encoding, parts) == ("gsm7", ["hello"])
    result = segment("hello")
    assert isinstance(result, Segmentation)
    assert result.count == 1
    assert result.units == [5]
    assert result.total_units == 5
    assert not result.is_multipart
    assert result.limit == 160
    assert result.remaining == 155


def test_segment_multipart_properties() -> None:
    result = segment("a" * 161)
    assert result.is_multipart
    assert result.limit == 153
    assert result.remaining == 153 - 8
    assert result.total_units == 161


def test_empty_text_raises() -> None:
    with pytest.raises(SegmentationError, match="empty"):
        segment("")


def test_segmentation_error_is_value_error() -> None:
    assert issubclass(SegmentationError, ValueError)
    assert issubclass(TooManyPartsError, SegmentationError)


def test_lone_surrogate_raises() -> None:
    with pytest.raises(SegmentationError, match="surrogate"):
        segment("abc\ud83d")


def test_non_str_rejected() -> None:
    with pytest.raises(TypeError):
        segment(b"abc")  # type: ignore[arg-type]


def test_one_non_gsm_char_switches_whole_message_to_ucs2() -> None:
    result = segment("a" * 100 + "ক")
    assert result.encoding == "ucs2"
    assert result.count == 2
    assert result.units == [67, 34]


def test_emoji_counts_two_units() -> None:
    result = segment("😀" * 35)
    assert (result.encoding, result.count, result.units) == ("ucs2", 1, [70])
    result = segment("😀" * 36)
    assert result.count == 2
    assert result.units == [66, 6]


def test_form_feed_is_extension_char() -> None:
    result = segment("\f")
    assert (result.encoding, result.units) == ("gsm7", [2])


def test_max_parts_default_allows_exactly_ten() -> None:
    assert MAX_PARTS == 10
    assert segment("a" * 153 * 10).count == 10


def test_max_parts_error_says_how_many_parts() -> None:
    with pytest.raises(TooManyPartsError, match=r"needs 11 gsm7 parts.*at most 10") as info:
        segment("a" * (153 * 10 + 1))
    assert info.value.needed == 11
    assert info.value.max_parts == 10


def test_max_parts_override() -> None:
    with pytest.raises(SegmentationError, match="needs 3"):
        segment("ক" * 135, max_parts=2)
    assert segment("ক" * 135, max_parts=3).count == 3
    assert segment("a" * 5000, max_parts=None).count == 33


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_max_parts_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ValueError):
        segment("hi", max_parts=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# segment(): properties
# --------------------------------------------------------------------------

GSM_CHARS = st.sampled_from(sorted(GSM_BASIC))
EXT_CHARS = st.sampled_from(sorted(GSM_EXTENSION))
BANGLA_CHARS = st.characters(min_codepoint=0x0980, max_codepoint=0x09FF)
EMOJI_CHARS = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
ANY_CHARS = st.characters(exclude_categories=("Cs",))

# Mostly-GSM texts are weighted in so the gsm7 branch and its escape-pair
# boundaries get exercised, not only ucs2.
MIXED_TEXT = st.one_of(
    st.text(st.one_of(GSM_CHARS, EXT_CHARS), min_size=1, max_size=1200),
    st.text(
        st.one_of(GSM_CHARS, EXT_CHARS, BANGLA_CHARS, EMOJI_CHARS, ANY_CHARS),
        min_size=1,
        max_size=800,
    ),
    st.text(st.one_of(BANGLA_CHARS, EMOJI_CHARS), min_size=1, max_size=500),
    st.text(min_size=1, max_size=400),
)


def _units(text: str, encoding: str) -> int:
    if encoding == "gsm7":
        return sum(2 if ch in GSM_EXTENSION else 1 for ch in text)
    return len(text.encode("utf-16-be")) // 2


def _check_gsm7_bytes(data: bytes) -> None:
    """Every escape must be followed by a valid extension code."""
    ext_codes = {0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65}
    i = 0
    while i < len(data):
        assert data[i] <= 0x7F
        if data[i] == 0x1B:
            assert i + 1 < len(data), "part ends with a dangling escape"
            assert data[i + 1] in ext_codes, "escape followed by a non-extension code"
            i += 2
        else:
            i += 1


@PROPERTY
@given(MIXED_TEXT)
def test_segment_properties(text: str) -> None:
    result = segment(text, max_parts=None)
    encoding, parts = result

    assert (encoding == "gsm7") == all(ch in GSM_ALL for ch in text)
    assert "".join(parts) == text
    assert all(parts), "no empty parts"

    single, multi = LIMITS[encoding]
    limit = single if len(parts) == 1 else multi
    units = [_units(part, encoding) for part in parts]
    assert result.units == units
    assert all(u <= limit for u in units)
    if len(parts) > 1:
        assert _units(text, encoding) > single
        # Greedy fill: a part is only closed when the next char cannot fit,
        # so the part count charged is the minimum.
        for part, nxt in itertools.pairwise(parts):
            assert _units(part + nxt[0], encoding) > multi

    if encoding == "gsm7":
        for part in parts:
            _check_gsm7_bytes(encode_part(part, "gsm7"))
        assert b"".join(encode_part(p, "gsm7") for p in parts) == encode_part(text, "gsm7")
    else:
        for part in parts:
            raw = part.encode("utf-16-be")  # strict: raises on a lone surrogate
            assert not 0xDC00 <= int.from_bytes(raw[:2], "big") <= 0xDFFF
            assert not 0xD800 <= int.from_bytes(raw[-2:], "big") <= 0xDBFF


@PROPERTY
@given(MIXED_TEXT)
def test_max_parts_never_truncates(text: str) -> None:
    needed = segment(text, max_parts=None).count
    if needed <= MAX_PARTS:
        assert segment(text).count == needed
    else:
        with pytest.raises(TooManyPartsError) as info:
            segment(text)
        assert info.value.needed == needed


@PROPERTY
@given(MIXED_TEXT)
def test_encode_decode_round_trip(text: str) -> None:
    encoding, parts = segment(text, max_parts=None)
    for part in parts:
        raw = encode_part(part, encoding)
        if encoding == "gsm7":
            assert len(raw) == _units(part, "gsm7")
            assert decode_gsm7(raw) == part
        else:
            assert decode_ucs2(raw) == part
    # Any text can go out as UCS-2, even when it would fit GSM-7.
    assert decode_ucs2(encode_part(text, "ucs2")) == text


@PROPERTY
@given(st.binary(max_size=300).map(lambda b: bytes(x & 0x7F for x in b)))
def test_decode_gsm7_never_crashes_on_septets(data: bytes) -> None:
    try:
        decoded = decode_gsm7(data)
    except ValueError:
        assert data.endswith(b"\x1b")
    else:
        assert all(ch in GSM_ALL for ch in decoded)


# --------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("@", 0x00), ("£", 0x01), ("$", 0x02), ("Ç", 0x09), ("\n", 0x0A),
        ("\r", 0x0D), ("Δ", 0x10), ("_", 0x11), ("Æ", 0x1C), ("É", 0x1F),
        (" ", 0x20), ("¤", 0x24), ("0", 0x30), ("¡", 0x40), ("A", 0x41),
        ("Ä", 0x5B), ("§", 0x5F), ("¿", 0x60), ("a", 0x61), ("à", 0x7F),
    ],
)
def test_encode_gsm7_basic_codes(char: str, code: int) -> None:
    assert encode_part(char, "gsm7") == bytes([code])
    assert decode_gsm7(bytes([code])) == char


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\f", 0x0A), ("^", 0x14), ("{", 0x28), ("}", 0x29), ("\\", 0x2F),
        ("[", 0x3C), ("~", 0x3D), ("]", 0x3E), ("|", 0x40), ("€", 0x65),
    ],
)
def test_encode_gsm7_extension_codes(char: str, code: int) -> None:
    assert encode_part(char, "gsm7") == bytes([0x1B, code])
    assert decode_gsm7(bytes([0x1B, code])) == char


def test_gsm7_alphabet_is_complete() -> None:
    assert len(set(GSM_BASIC)) == 127
    assert all(len(encode_part(ch, "gsm7")) == 1 for ch in GSM_BASIC)
    assert all(segment(ch).encoding == "gsm7" for ch in GSM_ALL)


def test_encode_part_examples() -> None:
    assert encode_part("Hi €5", "gsm7") == b"Hi \x1b\x655"
    assert encode_part("কa", "ucs2") == b"\x09\x95\x00a"
    assert encode_part("😀", "ucs2") == b"\xd8\x3d\xde\x00"


def test_encode_part_rejects_non_gsm_text() -> None:
    with pytest.raises(ValueError, match="not in GSM-7"):
        encode_part("ç", "gsm7")


def test_encode_part_rejects_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        encode_part("a", "latin1")


def test_decode_gsm7_lenient_per_23038() -> None:
    # Undefined extension code: show the basic-table char; ESC ESC: a space.
    assert decode_gsm7(b"\x1b\x41") == "A"
    assert decode_gsm7(b"\x1b\x1b") == " "


def test_decode_gsm7_rejects_corrupt_data() -> None:
    with pytest.raises(ValueError, match="0x80"):
        decode_gsm7(b"a\x80")
    with pytest.raises(ValueError, match="escape"):
        decode_gsm7(b"abc\x1b")


def test_decode_ucs2() -> None:
    assert decode_ucs2(b"\x09\x95\xd8\x3d\xde\x00") == "ক😀"
    with pytest.raises(ValueError, match="odd length"):
        decode_ucs2(b"\x00a\x00")
    with pytest.raises(ValueError):
        decode_ucs2(b"\xd8\x3d")  # lone high surrogate


def test_data_coding() -> None:
    assert data_coding("gsm7") == 0
    assert data_coding("ucs2") == 8
    with pytest.raises(ValueError):
        data_coding("GSM7")


def test_concat_udh() -> None:
    assert concat_udh(0x2A, 3, 1) == bytes.fromhex("0500032a0301")
    assert concat_udh(0, 1, 1) == bytes.fromhex("050003000101")
    assert concat_udh(255, 255, 255) == bytes.fromhex("050003ffffff")
    assert ESM_CLASS_UDHI == 0x40


@pytest.mark.parametrize(
    ("ref", "total", "seq"),
    [(256, 2, 1), (-1, 2, 1), (1, 0, 1), (1, 256, 1), (1, 2, 0), (1, 2, 3)],
)
def test_concat_udh_validates_ranges(ref: int, total: int, seq: int) -> None:
    with pytest.raises(ValueError):
        concat_udh(ref, total, seq)


def test_concat_udh_rejects_non_int() -> None:
    with pytest.raises(TypeError):
        concat_udh(1.0, 2, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        concat_udh(True, 2, 1)


# --------------------------------------------------------------------------
# contains_bangla, cost
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("আপনার বিল ৫০০ টাকা", True),
        ("Offer: 50% off! অফার", True),
        ("\u0980", True),
        ("\u09ff", True),
        ("Dear Rahim, your bill is 500 Tk", False),
        ("\u097f\u0a00", False),  # neighbours of the block (Devanagari, Gurmukhi)
        ("سلام 😀", False),
        ("", False),
    ],
)
def test_contains_bangla(text: str, expected: bool) -> None:
    assert contains_bangla(text) is expected


def test_cost_per_part() -> None:
    assert cost("hello", Decimal("0.35")) == Decimal("0.35")
    assert cost("a" * 161, Decimal("0.35")) == Decimal("0.70")
    assert cost("ক" * 135, Decimal("0.25")) == Decimal("0.75")
    assert isinstance(cost("hi", Decimal(1)), Decimal)


def test_cost_rejects_float_and_bad_prices() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        cost("hi", 0.35)  # type: ignore[arg-type]
    for bad in (Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            cost("hi", bad)


def test_cost_refuses_too_long_and_empty() -> None:
    with pytest.raises(TooManyPartsError):
        cost("a" * 2000, Decimal("0.35"))
    assert cost("a" * 2000, Decimal("0.35"), max_parts=20) == Decimal("0.35") * 14
    with pytest.raises(SegmentationError):
        cost("", Decimal("0.35"))
