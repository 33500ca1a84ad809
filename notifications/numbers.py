"""Recipient numbers (E.164 via phonenumbers) and sender ids."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from ispcore.core.phone import normalise_mobile

_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{1,16}$")


def validate_sender_id(value: str) -> str:
    """A sender id is alphanumeric (1-11 characters, at least one letter) or numeric (up
    to 16 digits). Returns it stripped; raises ValidationError saying which rule failed."""
    text = (value or "").strip()
    if not text:
        raise ValidationError(_("Enter a sender id."))
    digits = text.lstrip("+")
    if digits.isdigit():
        if not _NUMERIC_SENDER.match(text):
            raise ValidationError(_("A numeric sender id has at most 16 digits."))
        return digits
    if not any(ch.isalpha() for ch in text):
        raise ValidationError(_("An alphanumeric sender id needs at least one letter."))
    if not _ALNUM_SENDER.match(text):
        raise ValidationError(_("An alphanumeric sender id is 1-11 letters, digits or spaces (ASCII)."))
    return text


@dataclass
class NumberList:
    """Numbers split into valid unique E.164 ones, invalid ones (with the reason) and a
    count of duplicates dropped, in input order."""

    valid: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0


def normalise_numbers(raw: Iterable[str], region: str = "BD") -> NumberList:
    """Normalise every number with the tenant's region; keep the first of duplicates."""
    result = NumberList()
    seen: set[str] = set()
    for item in raw:
        text = str(item).strip()
        if not text:
            continue
        try:
            number = normalise_mobile(text, region)
        except ValidationError as exc:
            result.invalid.append((text, exc.messages[0]))
            continue
        if number in seen:
            result.duplicates += 1
            continue
        seen.add(number)
        result.valid.append(number)
    return result


_SPLIT = re.compile(r"[\s,;]+")


def split_pasted(text: str) -> list[str]:
    """Numbers pasted in a box: separated by newlines, commas, semicolons or spaces
    (a space inside '+880 1712 345678' is kept when the pieces only make sense together)."""
    lines = [line.strip() for line in (text or "").splitlines()]
    out: list[str] = []
    for line in lines:
        if not line:
            continue
        pieces = [p for p in re.split(r"[,;\t]+", line) if p.strip()]
        for piece in pieces:
            compact = piece.strip()
            if re.fullmatch(r"\+?[\d\s\-()]+", compact) and len(re.sub(r"\D", "", compact)) <= 15:
                out.append(compact)
            else:
                out.extend(p for p in _SPLIT.split(compact) if p)
    return out


#: Bangladeshi mobile numbers (operator codes 013-019, 8 more digits) in the forms people
#: write them; exactly what phonenumbers accepts as a valid BD mobile, checked in
#: tests/notifications/test_smscore_fastcount.py, at a fraction of the cost.
_BD_MOBILE = re.compile(r"(?:\+?88)?(01[3-9]\d{8})")


def fast_e164(raw: str, region: str) -> str | None:
    """The E.164 form of a plain BD mobile number, or None (then ask phonenumbers)."""
    if region != "BD":
        return None
    match = _BD_MOBILE.fullmatch(raw)
    return "+88" + match.group(1) if match else None


def to_provider_address(number: str) -> str:
    """E.164 '+8801712345678' -> the digits SMPP/HTTP providers want ('8801712345678')."""
    return number.lstrip("+")
