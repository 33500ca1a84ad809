"""Who a campaign goes to: dynamic customer audiences, groups, pasted or uploaded lists.

:func:`resolve` turns ``Campaign.audience`` into :class:`Recipient` rows (raw number,
customer id or None). Normalisation, duplicates and opt-outs are the campaign's job
(``notifications.campaigns.start_campaign``), so every source is treated the same.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .numbers import split_pasted

CUSTOMER_FILTERS = {"zone", "package", "status", "node", "expiring_within_days", "due_gt", "customer_type"}


class Recipient(NamedTuple):
    number: str
    customer_id: int | None


def customer_queryset(tenant, spec: Mapping):
    """Customers of ``tenant`` matching the dynamic audience ``spec``.

    zone: zone ids (an area's sub-areas included); package: package ids; status: list;
    node: a reseller node id (its whole subtree); expiring_within_days: expiry between
    now and now + N days; due_gt: amount due (negative wallet balance) above X;
    customer_type: list."""
    from ispcore.accounts.models import AccountNode
    from ispcore.subscribers.models import Customer

    unknown = set(spec) - CUSTOMER_FILTERS - {"kind"}
    if unknown:
        raise ValidationError({"audience": _("Unknown audience filter(s): %(f)s.") % {"f": ", ".join(sorted(unknown))}})
    qs = Customer.objects.filter(tenant=tenant)
    if spec.get("zone"):
        zones = [int(z) for z in spec["zone"]]
        qs = qs.filter(Q(zone_id__in=zones) | Q(zone__parent_id__in=zones))
    if spec.get("package"):
        qs = qs.filter(package_id__in=[int(p) for p in spec["package"]])
    if spec.get("status"):
        qs = qs.filter(status__in=list(spec["status"]))
    if spec.get("customer_type"):
        qs = qs.filter(customer_type__in=list(spec["customer_type"]))
    if spec.get("node"):
        node = AccountNode.objects.filter(tenant=tenant, pk=int(spec["node"])).first()
        if node is None:
            raise ValidationError({"audience": _("Unknown reseller.")})
        qs = qs.filter(node__path__startswith=node.path)
    if spec.get("expiring_within_days") not in (None, ""):
        days = int(spec["expiring_within_days"])
        now = timezone.now()
        qs = qs.filter(expires_at__gte=now, expires_at__lte=now + timedelta(days=days))
    if spec.get("due_gt") not in (None, ""):
        try:
            due = Decimal(str(spec["due_gt"]))
        except InvalidOperation:
            raise ValidationError({"audience": _("'due_gt' must be an amount.")}) from None
        qs = qs.filter(wallet__balance__lt=-due)
    return qs


def resolve(tenant, audience: Mapping) -> Iterator[Recipient]:
    """Every recipient of ``audience`` in a stable order (duplicates still in)."""
    from .models import ContactGroup

    kind = audience.get("kind")
    if kind == "customers":
        rows = customer_queryset(tenant, audience).order_by("id").values_list("mobile", "id")
        for mobile, cid in rows.iterator(chunk_size=5000):
            yield Recipient(mobile, cid)
    elif kind == "group":
        group = ContactGroup.objects.filter(tenant=tenant, pk=audience.get("group")).first()
        if group is None:
            raise ValidationError({"audience": _("Unknown group.")})
        for number, cid in group.members.order_by("id").values_list("number", "customer_id").iterator(chunk_size=5000):
            yield Recipient(number, cid)
    elif kind == "numbers":
        numbers = audience.get("numbers") or []
        if isinstance(numbers, str):
            numbers = split_pasted(numbers)
        for number in numbers:
            yield Recipient(str(number), None)
    else:
        raise ValidationError({"audience": _("Choose customers, a group or a list of numbers.")})


def parse_upload(content: bytes, filename: str) -> list[str]:
    """Numbers from an uploaded CSV or XLSX: the column headed like 'mobile'/'phone'/'number'
    (case-insensitive), else the first column. ValidationError for anything else."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a bad file
            raise ValidationError(_("The file is not a readable XLSX workbook (%(e)s).") % {"e": exc}) from None
        rows = [[("" if c is None else str(c)) for c in row] for row in book.active.iter_rows(values_only=True)]
    elif name.endswith((".csv", ".txt")):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError(_("The CSV file is not UTF-8 text.")) from None
        rows = list(csv.reader(io.StringIO(text)))
    else:
        raise ValidationError(_("Upload a .csv or .xlsx file."))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return []
    column = 0
    header = [c.strip().lower() for c in rows[0]]
    for i, cell in enumerate(header):
        if cell in {"mobile", "phone", "number", "msisdn", "mobile number", "phone number"}:
            column = i
            rows = rows[1:]
            break
    else:
        if header and not any(ch.isdigit() for ch in header[0]):
            rows = rows[1:]
    out = []
    for row in rows:
        if column < len(row) and row[column].strip():
            value = row[column].strip()
            if value.endswith(".0") and value[:-2].isdigit():  # a number cell read as float text
                value = value[:-2]
            out.append(value)
    return out
