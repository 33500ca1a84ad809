"""Reads that span billing models: receivables and income, for the panel, API and exports.

Every query starts from `visible_to(user)`, so a reseller's report covers its subtree only."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, F, Sum
from django.utils import timezone

from ispcore.accounts.models import AccountNode
from ispcore.subscribers.models import Customer

from .models import Invoice, LedgerEntry, Payment, Wallet

AGEING = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))
ZERO = Decimal("0.00")


def ageing_bucket(days_overdue: int) -> str:
    for name, low, high in AGEING:
        if days_overdue >= low and (high is None or days_overdue <= high):
            return name
    return AGEING[0][0]


def receivables(user, *, today: date | None = None, income_from: datetime | None = None,
                income_to: datetime | None = None) -> dict:
    """What each customer owes (with ageing by days past due), what each staff member holds in
    undeposited cash, what each reseller owes (postpaid) or holds (prepaid), and the ISP's
    income by source over a period (default: this month in the tenant's zone)."""
    tenant = user.tenant
    tz = tenant.tzinfo if tenant else timezone.get_current_timezone()
    today = today or timezone.localdate(timezone.now(), tz)
    now = timezone.now()
    if income_from is None:
        local_now = timezone.localtime(now, tz)
        income_from = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    income_to = income_to or now

    invoices = (Invoice.objects.visible_to(user).filter(status=Invoice.Status.OPEN)
                .annotate(outstanding_amount=F("total") - F("paid"))
                .values("customer_id", "due_date", "outstanding_amount"))
    by_customer: dict[int, dict] = defaultdict(lambda: {"total": ZERO, **{b[0]: ZERO for b in AGEING}})
    buckets = {b[0]: ZERO for b in AGEING}
    for row in invoices:
        days = max(0, (today - row["due_date"]).days)
        bucket = ageing_bucket(days)
        entry = by_customer[row["customer_id"]]
        entry["total"] += row["outstanding_amount"]
        entry[bucket] += row["outstanding_amount"]
        buckets[bucket] += row["outstanding_amount"]
    names = dict(Customer.objects.filter(pk__in=by_customer).values_list("id", "username"))
    customers = sorted(({"customer": cid, "username": names.get(cid, ""), **vals} for cid, vals in by_customer.items()),
                       key=lambda r: r["total"], reverse=True)

    cash = (Payment.objects.visible_to(user).filter(method=Payment.Method.CASH, deposited_at__isnull=True)
            .values("collected_by", "collected_by__username").annotate(amount=Sum("amount"), payments=Count("id"))
            .order_by("-amount"))
    staff = [{"user": r["collected_by"], "username": r["collected_by__username"] or "", "undeposited": r["amount"],
              "payments": r["payments"]} for r in cash]

    nodes = (Wallet.objects.visible_to(user).filter(node__isnull=False, node__parent__isnull=False)
             .select_related("node").order_by("node__path"))
    resellers = []
    for w in nodes:
        if w.node.kind == "card_distributor" and w.balance == 0:
            continue
        postpaid = w.node.billing_mode == AccountNode.BillingMode.POSTPAID
        resellers.append({
            "node": w.node_id, "name": w.node.name, "kind": w.node.kind, "billing_mode": w.node.billing_mode,
            "balance": w.balance, "owes": max(ZERO, -w.balance) if postpaid else ZERO,
            "holds": max(ZERO, w.balance), "credit_limit": w.credit_limit,
        })

    income_rows = (LedgerEntry.objects.visible_to(user)
                   .filter(wallet__system_code="revenue", created_at__gte=income_from, created_at__lt=income_to)
                   .values("transaction__kind").annotate(amount=Sum("amount")).order_by("transaction__kind"))
    income = {r["transaction__kind"]: r["amount"] for r in income_rows}
    return {
        "as_of": today.isoformat(),
        "customers": customers,
        "customers_total": sum((c["total"] for c in customers), ZERO),
        "ageing": buckets,
        "staff_cash": staff,
        "resellers": resellers,
        "resellers_owe": sum((r["owes"] for r in resellers), ZERO),
        "income": {"from": income_from.isoformat(), "to": income_to.isoformat(), "by_source": income,
                   "total": sum(income.values(), ZERO)},
        "customers_with_credit": Wallet.objects.visible_to(user).filter(customer__isnull=False, balance__gt=0).count(),
        "open_invoices": Invoice.objects.visible_to(user).filter(status=Invoice.Status.OPEN).count(),
    }
