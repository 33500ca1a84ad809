"""Message templates: placeholders from customer fields, validated on save, rendered in
bulk (one query per field family for a whole campaign, never one per recipient).

Placeholders use ``{name}``; a literal brace is written ``{{`` / ``}}``. Only the names
in :data:`CUSTOMER_FIELDS` (plus the event's own fields for transactional templates)
are allowed, with no format spec, conversion, attribute or index: an unknown or
malformed placeholder is a clear ValidationError when the template is saved, not a
broken message at send time.
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

#: placeholder -> what it is (shown in the compose page).
CUSTOMER_FIELDS: dict[str, str] = {
    "name": "Customer's full name",
    "username": "Login name",
    "mobile": "Mobile number",
    "package": "Current package",
    "expiry": "Expiry date and time (tenant time zone)",
    "expiry_date": "Expiry date",
    "balance": "Wallet balance (credit)",
    "due": "Amount due (0 when in credit)",
    "usage": "This month's usage in GB",
    "zone": "Zone / area",
    "status": "Account status",
    "isp": "ISP name",
}

#: extra placeholders each transactional event brings (from the OutboxEvent payload).
EVENT_FIELDS: dict[str, set[str]] = {
    "payment.received": {"amount", "method"},
    "invoice.generated": {"amount", "number", "due_date", "period"},
    "customer.expiry_warning": {"hours"},
    "customer.expired": set(),
    "customer.suspended": {"reason"},
    "card.redeemed": {"amount", "serial"},
    "package.purchased": {"price"},
    "otp": {"code", "minutes"},
}

#: Bangla defaults used when a tenant has not written its own text.
DEFAULT_EVENT_TEMPLATES: dict[str, str] = {
    "payment.received": "প্রিয় {name}, আপনার {amount} টাকা পেমেন্ট গৃহীত হয়েছে। বর্তমান ব্যালেন্স {balance} টাকা, "
                        "মেয়াদ {expiry} পর্যন্ত। ধন্যবাদ - {isp}",
    "invoice.generated": "প্রিয় {name}, আপনার {period} মাসের বিল {amount} টাকা। পরিশোধের শেষ তারিখ {due_date}। - {isp}",
    "customer.expiry_warning": "প্রিয় {name}, আপনার ইন্টারনেট প্যাকেজ ({package}) এর মেয়াদ {expiry} তারিখে শেষ হবে। "
                               "অনুগ্রহ করে রিচার্জ করুন। - {isp}",
    "customer.expired": "প্রিয় {name}, আপনার ইন্টারনেট প্যাকেজের মেয়াদ শেষ হয়েছে। সংযোগ চালু রাখতে রিচার্জ করুন। - {isp}",
    "customer.suspended": "প্রিয় {name}, বকেয়া {due} টাকার জন্য আপনার সংযোগ স্থগিত করা হয়েছে। - {isp}",
    "card.redeemed": "প্রিয় {name}, {amount} টাকার কার্ড রিচার্জ সফল হয়েছে। মেয়াদ {expiry} পর্যন্ত। - {isp}",
    "package.purchased": "প্রিয় {name}, {package} প্যাকেজ চালু হয়েছে, মেয়াদ {expiry} পর্যন্ত। - {isp}",
    "otp": "আপনার যাচাইকরণ কোড {code}। {minutes} মিনিটের মধ্যে ব্যবহার করুন। কাউকে জানাবেন না। - {isp}",
}

_FORMATTER = string.Formatter()


def placeholders(body: str) -> list[str]:
    """The placeholder names in ``body``, in order; ValidationError if malformed."""
    names: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(body))
    except ValueError as exc:
        raise ValidationError(_("The template has an unbalanced brace (%(error)s); write {{ or }} for a "
                                "literal brace.") % {"error": exc}) from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            raise ValidationError(_("'{%(field)s}' is not a placeholder; use a name such as {name}.") % {"field": field})
        if spec or conversion:
            raise ValidationError(_("Placeholder {%(field)s} cannot have a format or conversion.") % {"field": field})
        names.append(field)
    return names


def allowed_fields(event: str | None = None) -> set[str]:
    return set(CUSTOMER_FIELDS) | (EVENT_FIELDS.get(event, set()) if event else set())


def validate_template(body: str, *, event: str | None = None) -> list[str]:
    """Raise ValidationError naming every unknown placeholder; return the names used."""
    if not (body or "").strip():
        raise ValidationError(_("The text is empty."))
    names = placeholders(body)
    allowed = allowed_fields(event)
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        raise ValidationError(
            _("Unknown placeholder(s): %(unknown)s. Allowed: %(allowed)s.")
            % {"unknown": ", ".join("{" + n + "}" for n in unknown),
               "allowed": ", ".join("{" + n + "}" for n in sorted(allowed))},
            code="unknown_placeholder",
        )
    return names


def render(body: str, context: Mapping[str, object]) -> str:
    """Fill ``body``; a placeholder missing from ``context`` renders empty."""
    return _FORMATTER.vformat(body, (), _Blank(context))


def compile_template(body: str):
    """A fast ``render`` for one body used many times (a campaign): parsed once."""
    pieces = [(literal, field) for literal, field, _spec, _conv in _FORMATTER.parse(body)]

    def fill(context: Mapping[str, object]) -> str:
        out = []
        for literal, field in pieces:
            out.append(literal)
            if field is not None:
                value = context.get(field)
                out.append("" if value is None else str(value))
        return "".join(out)

    return fill


class _Blank(dict):
    def __init__(self, data: Mapping[str, object]):
        super().__init__(data)

    def __missing__(self, key: str) -> str:
        return ""


def _money(value: Decimal | None) -> str:
    if value is None:
        return "0"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value == value.to_integral_value() else f"{value:.2f}"


def _local(dt: datetime | None, tz: ZoneInfo, fmt: str) -> str:
    return timezone.localtime(dt, tz).strftime(fmt) if dt else ""


def customer_contexts(customer_ids: Iterable[int], *, tenant, needed: Iterable[str] | None = None) -> dict[int, dict]:
    """Placeholder values for many customers with a handful of queries.

    ``needed`` (the template's placeholders) skips work nobody asked for (usage sums
    the month's DailyUsage rows only when ``{usage}`` is used)."""
    from ispcore.billing.models import Wallet
    from ispcore.subscribers.models import Customer

    ids = list(customer_ids)
    need = set(needed) if needed is not None else set(CUSTOMER_FIELDS)
    tz = tenant.tzinfo
    out: dict[int, dict] = {}
    rows = (Customer.objects.filter(pk__in=ids)
            .values_list("id", "full_name", "username", "mobile", "package__name", "expires_at", "zone__name",
                         "status"))
    for cid, name, username, mobile, package, expires, zone, status in rows.iterator(chunk_size=5000):
        out[cid] = {"name": name, "username": username, "mobile": mobile, "package": package or "",
                    "expiry": _local(expires, tz, "%d-%m-%Y %H:%M"), "expiry_date": _local(expires, tz, "%d-%m-%Y"),
                    "zone": zone or "", "status": status, "isp": tenant.name, "balance": "0", "due": "0",
                    "usage": "0"}
    if need & {"balance", "due"}:
        for cid, bal in Wallet.objects.filter(customer_id__in=ids).values_list("customer_id", "balance") \
                .iterator(chunk_size=5000):
            if cid in out:
                out[cid]["balance"] = _money(bal if bal > 0 else Decimal("0"))
                out[cid]["due"] = _money(-bal if bal < 0 else Decimal("0"))
    if "usage" in need:
        from radius.models import DailyUsage

        today = timezone.localtime(timezone.now(), tz).date()
        rows = (DailyUsage.objects.filter(customer_id__in=ids, day__gte=today.replace(day=1))
                .values("customer_id").annotate(i=Sum("input_octets"), o=Sum("output_octets")))
        for row in rows:
            if row["customer_id"] in out:
                out[row["customer_id"]]["usage"] = f"{((row['i'] or 0) + (row['o'] or 0)) / 1e9:.2f}"
    return out


def event_body(tenant_id: int, event: str) -> tuple[bool, str]:
    """(enabled, text) for a transactional event: the tenant's row or the Bangla default."""
    from .models import EventTemplate

    row = EventTemplate.objects.filter(tenant_id=tenant_id, event=event).first()
    default = DEFAULT_EVENT_TEMPLATES.get(event, "")
    if row is None:
        return bool(default), default
    return row.enabled, row.body or default
