"""Part counts for a campaign's many rendered texts without building the parts.

:func:`count_parts` gives exactly what ``encoding.segment(text)`` would (encoding and
number of parts) for the common cases where no boundary can move: UCS-2 text without
characters outside the BMP (no surrogate pair to keep whole) and GSM-7 text without
extension characters (no escape pair to keep whole). Anything else, and anything over
the part limit, goes through ``segment`` itself (which raises the clear error).
``tests/notifications/test_smscore_fastcount.py`` checks the equivalence.
"""
from __future__ import annotations

import re

from .encoding import (
    _BASIC,
    _EXTENSION,
    GSM7_MULTI_PART,
    GSM7_SINGLE_PART,
    MAX_PARTS,
    UCS2_MULTI_PART,
    UCS2_SINGLE_PART,
    segment,
)

_BASIC_ONLY = re.compile("[" + re.escape("".join(_BASIC)) + "]*\\Z")
_GSM_ANY = frozenset(_BASIC) | frozenset(_EXTENSION)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def count_parts(text: str) -> tuple[str, int]:
    """(encoding, parts) exactly as ``segment(text)`` would give them."""
    n = len(text)
    if _BASIC_ONLY.match(text):
        parts = 1 if n <= GSM7_SINGLE_PART else -(-n // GSM7_MULTI_PART)
        encoding = "gsm7"
    elif not _ASTRAL.search(text) and not _GSM_ANY.issuperset(text):
        parts = 1 if n <= UCS2_SINGLE_PART else -(-n // UCS2_MULTI_PART)
        encoding = "ucs2"
    else:
        seg = segment(text)
        return seg.encoding, seg.count
    if n == 0 or parts > MAX_PARTS:
        seg = segment(text)  # raises TooManyPartsError with the usual message
        return seg.encoding, seg.count
    return encoding, parts
