"""Mobile numbers: validated and normalised to E.164 with `phonenumbers`."""
from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def normalise_mobile(raw: str, region: str = "BD") -> str:
    """Return `raw` as E.164 ('+8801712345678') or raise ValidationError saying why."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError(_("Enter a mobile number."))
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(_("'%(raw)s' is not a phone number.") % {"raw": raw}) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("'%(raw)s' is not a valid number for %(region)s.") % {"raw": raw, "region": region})
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise ValidationError(_("'%(raw)s' is not a mobile number.") % {"raw": raw})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
