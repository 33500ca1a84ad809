"""SMS encoding and segmentation (GSM 03.38 / UCS-2), our own implementation.

Guarantees of :func:`segment`:

* The encoding is chosen from the text alone: ``'gsm7'`` when every character
  is in the GSM 03.38 default alphabet or its extension table, otherwise
  ``'ucs2'``. Callers cannot force it, so Bangla is never sent as GSM-7 and
  garbled.
* Limits: GSM-7 160 septets in a single part, 153 per part when split; UCS-2
  70 UTF-16 code units single, 67 per part. The per-part figures leave room
  for the 6-byte concatenation UDH with an 8-bit reference (``concat_udh``).
* Parts are split on character boundaries, never on bytes: a GSM extension
  character (escape pair, 2 septets) and a character outside the BMP
  (a UTF-16 surrogate pair, 2 code units) always stay whole in one part.
* ``"".join(parts) == text`` exactly; nothing is dropped or normalised.
* Parts are filled greedily, so the part count is the minimum possible and
  is the number the customer is charged for.
* Empty text, text containing a lone surrogate, and text needing more than
  ``max_parts`` parts raise :class:`SegmentationError`; nothing is ever
  truncated silently.

Splitting happens between code points, so a Bangla conjunct or an emoji
ZWJ sequence may straddle two parts; that is harmless because the handset
reassembles concatenated parts before rendering, whereas a split surrogate
pair or escape pair is corrupt data in each part on its own.

The wire helpers (:func:`encode_part`, :func:`decode_gsm7`,
:func:`decode_ucs2`, :func:`data_coding`, :func:`concat_udh`) produce what an
SMPP ``submit_sm`` carries: GSM-7 unpacked (one septet per byte, as
``data_coding`` 0 expects) and UCS-2 as UTF-16-BE.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NamedTuple

__all__ = [
    "ESM_CLASS_UDHI",
    "GSM7",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE_PART",
    "MAX_PARTS",
    "UCS2",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE_PART",
    "Encoding",
    "Segmentation",
    "SegmentationError",
    "TooManyPartsError",
    "concat_udh",
    "contains_bangla",
    "cost",
    "data_coding",
    "decode_gsm7",
    "decode_ucs2",
    "detect_encoding",
    "encode_part",
    "is_gsm7",
    "segment",
    "text_units",
]

Encoding = Literal["gsm7", "ucs2"]
GSM7: Encoding = "gsm7"
UCS2: Encoding = "ucs2"

GSM7_SINGLE_PART = 160
GSM7_MULTI_PART = 153
UCS2_SINGLE_PART = 70
UCS2_MULTI_PART = 67
MAX_PARTS = 10

# SMPP esm_class bit saying the short_message starts with a UDH.
ESM_CLASS_UDHI = 0x40

_DATA_CODING: dict[str, int] = {GSM7: 0x00, UCS2: 0x08}

_ESCAPE = 0x1B

# GSM 03.38 default alphabet in code order; position 0x1B is the escape to
# the extension table, so it holds a placeholder that is never a real char.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
if len(_BASIC_TABLE) != 128:  # pragma: no cover - guards an edit mistake
    raise RuntimeError("GSM 03.38 basic table must have 128 entries")

_BASIC: dict[str, int] = {
    ch: code for code, ch in enumerate(_BASIC_TABLE) if code != _ESCAPE
}
_EXTENSION: dict[str, int] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_BASIC_BY_CODE: dict[int, str] = {code: ch for ch, code in _BASIC.items()}
_EXTENSION_BY_CODE: dict[int, str] = {code: ch for ch, code in _EXTENSION.items()}

_BANGLA_FIRST = "\u0980"
_BANGLA_LAST = "\u09ff"


class SegmentationError(ValueError):
    """The text cannot be sent as an SMS (empty, invalid, or too long)."""


class TooManyPartsError(SegmentationError):
    """The text needs more parts than allowed; ``needed`` says how many."""

    def __init__(self, needed: int, max_parts: int, encoding: str) -> None:
        self.needed = needed
        self.max_parts = max_parts
        self.encoding = encoding
        super().__init__(
            f"message needs {needed} {encoding} parts but at most {max_parts} "
            f"are allowed; shorten it rather than have it truncated"
        )


class Segmentation(NamedTuple):
    """Result of :func:`segment`: the encoding and the text of each part."""

    encoding: Encoding
    parts: list[str]

    @property
    def count(self) -> int:
        """Number of parts, i.e. the number of SMS charged."""
        return len(self.parts)

    @property
    def units(self) -> list[int]:
        """Size of each part: septets for gsm7, UTF-16 code units for ucs2."""
        return [text_units(part, self.encoding) for part in self.parts]

    @property
    def total_units(self) -> int:
        """Size of the whole message in septets / UTF-16 code units."""
        return sum(self.units)

    @property
    def is_multipart(self) -> bool:
        """True when the parts must be sent with a concatenation UDH."""
        return len(self.parts) > 1

    @property
    def limit(self) -> int:
        """Capacity of each part for this encoding and part count."""
        return _limits(self.encoding)[1 if self.is_multipart else 0]

    @property
    def remaining(self) -> int:
        """Units still free in the last part (for a live counter in the UI)."""
        return self.limit - self.units[-1]


def is_gsm7(text: str) -> bool:
    """Return True when every character of ``text`` is GSM-7 encodable."""
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def detect_encoding(text: str) -> Encoding:
    """Return the encoding :func:`segment` would use for ``text``."""
    return GSM7 if is_gsm7(text) else UCS2


def text_units(text: str, encoding: str) -> int:
    """Size of ``text`` in septets (gsm7) or UTF-16 code units (ucs2).

    Raises ValueError if ``text`` is not encodable in ``encoding``.
    """
    _check_encoding(encoding)
    if encoding == GSM7 and not is_gsm7(text):
        raise ValueError("text contains characters outside GSM-7")
    return sum(_char_units(ch, encoding) for ch in text)


def segment(text: str, *, max_parts: int | None = MAX_PARTS) -> Segmentation:
    """Choose the encoding for ``text`` and split it into SMS parts.

    ``max_parts=None`` lifts the part limit (for counting only). Raises
    :class:`SegmentationError` for empty text or a lone surrogate, and
    :class:`TooManyPartsError` when more than ``max_parts`` parts are needed.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if max_parts is not None and (
        isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1
    ):
        raise ValueError(f"max_parts must be a positive int or None, not {max_parts!r}")
    if not text:
        raise SegmentationError("message text is empty")
    for ch in text:
        # A lone surrogate cannot be encoded as UTF-16 and would fail (or be
        # mangled) at submit time, after credit has been reserved.
        if "\ud800" <= ch <= "\udfff":
            raise SegmentationError(
                f"message text contains a lone surrogate U+{ord(ch):04X}"
            )

    encoding = detect_encoding(text)
    single, multi = _limits(encoding)
    if text_units(text, encoding) <= single:
        return Segmentation(encoding, [text])

    parts: list[str] = []
    start = 0
    used = 0
    for index, ch in enumerate(text):
        size = _char_units(ch, encoding)
        # Whole characters only: the escape pair / surrogate pair that does
        # not fit moves to the next part, leaving this one a unit short.
        if used + size > multi:
            parts.append(text[start:index])
            start = index
            used = 0
        used += size
    parts.append(text[start:])

    if max_parts is not None and len(parts) > max_parts:
        raise TooManyPartsError(len(parts), max_parts, encoding)
    return Segmentation(encoding, parts)


def encode_part(part_text: str, encoding: str) -> bytes:
    """Encode one part for SMPP ``short_message``.

    gsm7: unpacked GSM 03.38, one byte per septet, extension characters as
    ``0x1B`` + code (data_coding 0). ucs2: UTF-16-BE (data_coding 8).
    Raises ValueError if the text is not encodable in ``encoding``.
    """
    _check_encoding(encoding)
    if encoding == UCS2:
        # Strict: a lone surrogate raises instead of being replaced.
        return part_text.encode("utf-16-be")
    out = bytearray()
    for ch in part_text:
        code = _BASIC.get(ch)
        if code is not None:
            out.append(code)
            continue
        code = _EXTENSION.get(ch)
        if code is None:
            raise ValueError(f"character {ch!r} (U+{ord(ch):04X}) is not in GSM-7")
        out += bytes((_ESCAPE, code))
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets (one per byte) from an incoming SMS.

    An escape followed by an undefined extension code decodes to the basic
    table character for that code and ``0x1B 0x1B`` to a space, as 3GPP TS
    23.038 tells receivers to do. Bytes above 0x7F and a trailing lone escape
    are corrupt data and raise ValueError.
    """
    chars: list[str] = []
    escaped = False
    for offset, byte in enumerate(data):
        if byte > 0x7F:
            raise ValueError(f"byte 0x{byte:02X} at offset {offset} is not a GSM-7 septet")
        if escaped:
            escaped = False
            if byte == _ESCAPE:
                chars.append(" ")
            else:
                chars.append(_EXTENSION_BY_CODE.get(byte, _BASIC_BY_CODE[byte]))
        elif byte == _ESCAPE:
            escaped = True
        else:
            chars.append(_BASIC_BY_CODE[byte])
    if escaped:
        raise ValueError("GSM-7 data ends with an incomplete escape sequence")
    return "".join(chars)


def decode_ucs2(data: bytes) -> str:
    """Decode UCS-2 / UTF-16-BE from an incoming SMS (data_coding 8).

    Handsets send emoji as surrogate pairs, so this is decoded as UTF-16.
    Odd lengths and lone surrogates raise ValueError (UnicodeDecodeError).
    """
    if len(data) % 2:
        raise ValueError(f"UCS-2 data has odd length {len(data)}")
    return bytes(data).decode("utf-16-be")


def data_coding(encoding: str) -> int:
    """SMPP ``data_coding`` value: 0 for gsm7 (SMSC default), 8 for ucs2."""
    _check_encoding(encoding)
    return _DATA_CODING[encoding]


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """Concatenation UDH with an 8-bit reference: ``05 00 03 ref total seq``.

    ``ref`` identifies the message (0-255, the same for all its parts),
    ``total`` is the part count (1-255) and ``seq`` this part (1-based).
    Send it with ``esm_class |= ESM_CLASS_UDHI``.
    """
    for name, value in (("ref", ref), ("total", total), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if not 0 <= ref <= 255:
        raise ValueError(f"ref must be 0-255, not {ref}")
    if not 1 <= total <= 255:
        raise ValueError(f"total must be 1-255, not {total}")
    if not 1 <= seq <= total:
        raise ValueError(f"seq must be 1-{total}, not {seq}")
    return bytes((0x05, 0x00, 0x03, ref, total, seq))


def contains_bangla(text: str) -> bool:
    """True if ``text`` has a character in the Bengali block U+0980-U+09FF."""
    return any(_BANGLA_FIRST <= ch <= _BANGLA_LAST for ch in text)


def cost(
    text: str, price_per_part: Decimal, *, max_parts: int | None = MAX_PARTS
) -> Decimal:
    """Price of sending ``text`` to one recipient: parts x ``price_per_part``.

    Only a finite, non-negative Decimal is accepted; floats would put binary
    rounding error into the credit ledger. Raises like :func:`segment`.
    """
    if not isinstance(price_per_part, Decimal):
        raise TypeError(
            f"price_per_part must be Decimal, not {type(price_per_part).__name__}"
        )
    if not price_per_part.is_finite() or price_per_part < 0:
        raise ValueError(f"price_per_part must be finite and >= 0, not {price_per_part}")
    return segment(text, max_parts=max_parts).count * price_per_part


def _check_encoding(encoding: str) -> None:
    if encoding not in _DATA_CODING:
        raise ValueError(f"unknown encoding {encoding!r}; expected 'gsm7' or 'ucs2'")


def _limits(encoding: str) -> tuple[int, int]:
    if encoding == GSM7:
        return GSM7_SINGLE_PART, GSM7_MULTI_PART
    return UCS2_SINGLE_PART, UCS2_MULTI_PART


def _char_units(ch: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if ch in _EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1
