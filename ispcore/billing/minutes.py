"""Per-minute reseller billing (SPEC 2): every minute, each selling node pays, for every one
of its customers that was active and online in that minute, the package's per-minute rate
from its price list (`PriceListEntry.minute_price`); each node above it earns the
difference between its child's rate and its own, and the ISP's revenue account gets the
top reseller's rate. For a customer of sub-reseller S under reseller R, per minute:

    S        -rate_S
    R        +(rate_S - rate_R)    R's commission on the same minute
    revenue  +rate_R

Whether a minute counts: the customer was active on that package at the START of the
minute (`ServiceSpan`, kept by a database trigger from the customer's status), and one of
its accounting sessions was open at any moment of the minute (so a session from 10:00:30
to 10:02:10 is three minutes, and overlapping sessions of one customer count once).

Exactly once: each node has one `MinuteBillingState` row; a tick locks it (SKIP LOCKED, so
a second worker takes other nodes or nothing), bills the whole minutes from `billed_until`
up to the target (catching up in chunks after a late or missed tick), posts the ledger
transactions (idempotency key per node and range) and advances `billed_until` in the same
transaction. A crash before commit leaves neither postings nor the new watermark.

Rounding: rates keep 6 places, the ledger keeps 2. Per node and tick the exact amount of
each leg is added to that leg's carried remainder and rounded DOWN to the paisa; the rest
(always under 0.01) is carried to the next tick, so nothing is lost or over-charged. The
revenue leg takes whatever balances the transaction.

When the paying wallet cannot cover a tick (a prepaid node at zero, a postpaid one at its
credit limit), nothing is posted for that node and its watermark stays: the minutes remain
owed and are billed, exactly once, by the first tick after a top-up or a higher limit. When
a charge is refused, or leaves the payer with nothing available, the node's active
customers are suspended if `suspend_at_zero` (per node, default MINUTE_BILLING_SUSPEND_AT_ZERO)."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from ispcore.accounts.models import AccountNode
from ispcore.accounts.roles import NodeKind
from ispcore.catalog.models import PriceListEntry
from ispcore.core import audit
from ispcore.core.bulk import bulk_set
from ispcore.core.models import JobRun
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer

from .locks import lock_wallets
from .models import MinuteBillingState, MinuteCharge, ResellerStatement, Wallet
from .services import Posting, open_wallet, post_transactions, system_wallet

log = logging.getLogger(__name__)

PAISA = Decimal("0.01")
ZERO = Decimal("0")
BILLED_KINDS = (NodeKind.RESELLER, NodeKind.SUB_RESELLER)
SUSPEND_REASON = "reseller_balance_exhausted"
REFUSED_RETRY = timedelta(hours=1)


def _setting(name: str, default):
    return getattr(settings, name, default)


def lag_seconds() -> int:
    """Minutes younger than this are left for the next tick, so late Stop/interim packets land first."""
    return int(_setting("MINUTE_BILLING_LAG_SECONDS", 60))


def chunk_minutes() -> int:
    """At most this many minutes per node per transaction when catching up."""
    return int(_setting("MINUTE_BILLING_CHUNK_MINUTES", 60))


def post_every_minutes() -> int:
    """Post a node once at least this many minutes are due (1: every minute). Minutes are
    still counted one by one; a larger value only trades ledger rows for reaction time."""
    return max(1, int(_setting("MINUTE_BILLING_POST_EVERY_MINUTES", 1)))


def batch_nodes() -> int:
    """Nodes billed together in one transaction."""
    return int(_setting("MINUTE_BILLING_BATCH_NODES", 500))


def suspend_default() -> bool:
    return bool(_setting("MINUTE_BILLING_SUSPEND_AT_ZERO", True))


def floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _floor_paisa(amount: Decimal) -> Decimal:
    return amount.quantize(PAISA, rounding=ROUND_FLOOR)


# Customer-minutes per (node, package) for each node's own range [s, e), in whole minutes
# since the epoch (integers: no range types on the hot path). A span counts from the first
# whole minute after it opened (the status at a minute's start decides it); a session
# counts in every minute it touches. Per span, its sessions are sorted and each adds only
# what lies past the furthest end before it (a window max), so overlapping sessions and a
# reconnect inside one minute count once.
MINUTES_SQL = """
WITH w(node_id, s, e, s_min, e_min) AS (
    SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::bigint[])
),
spans AS (
    SELECT sp.id, sp.customer_id, sp.package_id, w.node_id,
           greatest(ceil(date_part('epoch', sp.started_at) / 60)::bigint, w.s_min) AS lo,
           least(coalesce(ceil(date_part('epoch', sp.ended_at) / 60)::bigint, w.e_min), w.e_min) AS hi
      FROM billing_servicespan sp JOIN w ON sp.node_id = w.node_id
     WHERE sp.started_at < w.e AND (sp.ended_at IS NULL OR sp.ended_at > w.s)
),
sessions AS (
    -- Open sessions (partial index radius_open_by_customer), and the ones that closed
    -- inside the batch's time window (partial index billing_session_stopped): never the
    -- whole accounting history.
    SELECT customer_id, started_at, stopped_at FROM radius_accountingsession
     WHERE stopped_at IS NULL AND customer_id IS NOT NULL
    UNION ALL
    SELECT customer_id, started_at, stopped_at FROM radius_accountingsession
     WHERE stopped_at > %s AND started_at < %s AND customer_id IS NOT NULL
),
pairs AS (
    SELECT s.id, s.node_id, s.package_id,
           greatest(s.lo, floor(date_part('epoch', a.started_at) / 60)::bigint) AS plo,
           least(s.hi, coalesce(ceil(date_part('epoch', a.stopped_at) / 60)::bigint, s.hi)) AS phi
      FROM spans s JOIN sessions a ON a.customer_id = s.customer_id
     WHERE s.lo < s.hi
),
counted AS (
    SELECT node_id, package_id, plo, phi,
           max(phi) OVER (PARTITION BY id ORDER BY plo, phi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
      FROM pairs WHERE plo < phi
)
SELECT node_id, package_id, sum(greatest(0, phi - greatest(plo, coalesce(reach, plo))))::bigint
  FROM counted GROUP BY node_id, package_id
"""


def _minute_index(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def customer_minutes(ranges: dict[int, tuple[datetime, datetime]]) -> dict[int, dict[int, int]]:
    """{node id: (start, end)} -> {node id: {package id: customer-minutes}} (PostgreSQL only)."""
    if not ranges:
        return {}
    nodes = list(ranges)
    starts, ends = [ranges[n][0] for n in nodes], [ranges[n][1] for n in nodes]
    with connection.cursor() as cur:
        if connection.in_atomic_block:
            # Keep one tick's sorts in memory; on 2 shared cores parallel workers each
            # rebuilt the span hash and were slower than one process.
            cur.execute("SET LOCAL work_mem = '64MB'; SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(MINUTES_SQL, [nodes, starts, ends, [_minute_index(t) for t in starts],
                                  [_minute_index(t) for t in ends], min(starts), max(ends)])
        rows = cur.fetchall()
    out: dict[int, dict[int, int]] = defaultdict(dict)
    for node_id, package_id, minutes in rows:
        if minutes:
            out[node_id][package_id] = int(minutes)
    return out


def ensure_states(start: datetime) -> int:
    """Give every reseller and sub-reseller a billing state; a new one starts billing at `start`."""
    missing = list(AccountNode.objects.filter(kind__in=BILLED_KINDS, minute_billing__isnull=True)
                   .values_list("id", "tenant_id"))
    MinuteBillingState.objects.bulk_create(
        [MinuteBillingState(node_id=n, tenant_id=t, billed_until=start) for n, t in missing], ignore_conflicts=True)
    return len(missing)


def set_suspend_at_zero(node: AccountNode, value: bool | None, *, actor) -> MinuteBillingState:
    """Per node: suspend its customers when its wallet runs out (True/False), or follow the setting (None)."""
    with transaction.atomic():
        ensure_states(floor_minute(timezone.now()))
        state = MinuteBillingState.objects.select_for_update().get(node=node)
        old = state.suspend_at_zero
        state.suspend_at_zero = value
        state.save(update_fields=["suspend_at_zero", "updated_at"])
        audit.record("minute_billing.suspend_at_zero", state, actor=actor, old=old, new=value)
    return state


@dataclass
class _NodeBill:
    state: MinuteBillingState
    levels: list[int]  # the node itself first, then its ancestors up to the top reseller
    start: datetime
    end: datetime
    detail: dict[int, int] = field(default_factory=dict)
    exact: list[Decimal] = field(default_factory=list)
    carry: dict[str, str] = field(default_factory=dict)
    legs: list[tuple[int, Decimal]] = field(default_factory=list)
    paid: Decimal = ZERO
    refused: str = ""
    posting: Posting | None = None
    txn: object = None

    @property
    def node_id(self) -> int:
        return self.state.node_id


def _levels(path: str) -> list[int]:
    ids = [int(p) for p in path.strip("/").split("/") if p]
    return list(reversed(ids[1:]))  # drop the ISP root


def _rates(bills: list[_NodeBill]) -> dict[tuple[int, int], Decimal]:
    nodes = {n for b in bills for n in b.levels}
    packages = {p for b in bills for p in b.detail}
    if not nodes or not packages:
        return {}
    return {(n, p): rate for n, p, rate in PriceListEntry.objects.filter(
        node_id__in=nodes, package_id__in=packages, is_active=True, minute_price__isnull=False,
    ).values_list("node_id", "package_id", "minute_price")}


def _price(bill: _NodeBill, rates: dict[tuple[int, int], Decimal]) -> None:
    """Exact amount per level and the rounded legs (wallet ids filled in later)."""
    exact = [ZERO] * len(bill.levels)
    charged: dict[int, int] = {}
    for package_id, minutes in bill.detail.items():
        rate = rates.get((bill.levels[0], package_id))
        if rate is None:
            continue  # this node is not billed per minute for the package
        charged[package_id] = minutes
        for i, level in enumerate(bill.levels):
            # A level without its own rate passes its child's rate up (earns nothing).
            rate = rates.get((level, package_id), rate)
            exact[i] += minutes * rate
    bill.detail, bill.exact = charged, exact
    carry = {k: Decimal(v) for k, v in bill.state.carry.items()}
    owed = carry.get("payer", ZERO) + exact[0]
    bill.paid = _floor_paisa(owed)
    new_carry = {"payer": owed - bill.paid}
    legs: list[tuple[int, Decimal]] = [(bill.levels[0], -bill.paid)]
    for i in range(1, len(bill.levels)):
        key = str(bill.levels[i])
        earned = carry.get(key, ZERO) + exact[i - 1] - exact[i]
        got = _floor_paisa(earned)
        new_carry[key] = earned - got
        legs.append((bill.levels[i], got))
    bill.carry = {k: str(v) for k, v in new_carry.items()}
    bill.legs = legs  # node ids for now; the revenue leg is added with the wallets


def _advance(bills: list[_NodeBill], now: datetime) -> None:
    """Move the watermarks of the billed nodes (same transaction as their postings)."""
    states = []
    for bill in bills:
        bill.state.billed_until = bill.end
        bill.state.carry = bill.carry
        bill.state.refused_at, bill.state.refused_reason = None, ""
        bill.state.updated_at = now
        states.append(bill.state)
    bulk_set(states, ["billed_until", "carry", "refused_at", "refused_reason", "updated_at"])


def _bill_batch(target: datetime, skip: set[int], totals: dict, to_suspend: set[int]) -> bool:
    """Bill one chunk for up to batch_nodes() nodes in one transaction. False when nothing is left."""
    now = timezone.now()
    chunk = timedelta(minutes=chunk_minutes())
    with transaction.atomic():
        # A node refused for lack of funds is retried once its wallet changed (top-up,
        # payment, new limit) or after REFUSED_RETRY, not on every tick.
        retry = (Q(refused_at__isnull=True) | Q(node__wallet__updated_at__gt=F("refused_at"))
                 | Q(refused_at__lte=now - REFUSED_RETRY))
        states = list(MinuteBillingState.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(retry, billed_until__lte=target - timedelta(minutes=post_every_minutes()))
                      .exclude(node_id__in=skip)
                      .select_related("node").order_by("billed_until", "node_id")[:batch_nodes()])
        if not states:
            return False
        bills = [_NodeBill(state=s, levels=_levels(s.node.path), start=s.billed_until,
                           end=min(target, s.billed_until + chunk)) for s in states]
        minutes = customer_minutes({b.node_id: (b.start, b.end) for b in bills})
        for b in bills:
            b.detail = minutes.get(b.node_id, {})
        rates = _rates([b for b in bills if b.detail])
        for b in bills:
            _price(b, rates)
        billing = [b for b in bills if any(a for _, a in b.legs)]
        wallets = _wallets(billing)
        postings = _simulate(billing, wallets, to_suspend)
        by_key = {t.idempotency_key: t for t in post_transactions(postings)}
        for b in billing:
            if b.posting is not None:
                b.txn = by_key[b.posting.idempotency_key]
        refused = [b for b in bills if b.refused]
        for b in refused:
            if b.state.refused_at is None:  # audit when it starts, not on every retry
                audit.record("minute_billing.refused", b.state, reason=b.refused, billed_until=b.start.isoformat())
            b.state.refused_at, b.state.refused_reason = now, b.refused[:255]
            b.state.save(update_fields=["refused_at", "refused_reason", "updated_at"])
            skip.add(b.node_id)
        done = [b for b in bills if not b.refused]
        _advance(done, now)
        MinuteCharge.objects.bulk_create([
            MinuteCharge(tenant_id=b.state.tenant_id, node_id=b.node_id, period_start=b.start, period_end=b.end,
                         minutes=sum(b.detail.values()), detail={str(k): v for k, v in b.detail.items()},
                         exact=b.exact[0], posted=b.paid, transaction=b.txn)
            for b in done if b.detail
        ])
        totals["nodes"] += len(done)
        totals["refused"] += len(refused)
        totals["minutes"] += sum(sum(b.detail.values()) for b in done)
        totals["postings"] += len(postings)
        totals["charged"] += sum((b.paid for b in done), ZERO)
    return True


def _wallets(bills: list[_NodeBill]) -> dict:
    """Lock every wallet the bills touch (in id order) and put wallet ids into their legs."""
    if not bills:
        return {}
    nodes = {n for b in bills for n in b.levels}
    by_node = dict(Wallet.objects.filter(node_id__in=nodes).values_list("node_id", "id"))
    revenue = {}
    for node in AccountNode.objects.filter(id__in=nodes - set(by_node)).select_related("tenant"):
        by_node[node.id] = open_wallet(tenant=node.tenant, node=node).pk
    for b in bills:
        if b.state.tenant_id not in revenue:
            revenue[b.state.tenant_id] = system_wallet(b.state.node.tenant, "revenue").pk
    for b in bills:
        legs = [(by_node[n], a) for n, a in b.legs]
        legs.append((revenue[b.state.tenant_id], -sum((a for _, a in legs), ZERO)))
        b.legs = legs
    return lock_wallets({w for b in bills for w, _ in b.legs})


def _simulate(bills: list[_NodeBill], wallets: dict, to_suspend: set[int]) -> list[Posting]:
    """Check floors the way post_transactions will, deepest nodes first (their commissions
    reach the parents before the parents pay), and drop the bills a wallet cannot cover."""
    balances = {wid: w.balance for wid, w in wallets.items()}
    postings = []
    for bill in sorted(bills, key=lambda b: (-len(b.levels), b.node_id)):
        legs: dict[int, Decimal] = defaultdict(Decimal)
        for wid, amount in bill.legs:
            legs[wid] += amount
        legs = {w: a for w, a in legs.items() if a != 0}
        short = [w for w, a in legs.items() if a < 0 and not wallets[w].unbounded
                 and balances[w] + a < -wallets[w].credit_limit]
        if short:
            w = wallets[short[0]]
            bill.refused = (f"wallet {w.pk} has {balances[w.pk] + w.credit_limit} available, "
                            f"{-legs[w.pk]} needed for {bill.start:%Y-%m-%d %H:%M}..{bill.end:%H:%M} UTC")
            to_suspend.add(bill.node_id)
            continue
        for w, a in legs.items():
            balances[w] += a
        payer = wallets[bill.legs[0][0]]
        if bill.paid > 0 and balances[payer.pk] + payer.credit_limit <= 0:
            to_suspend.add(bill.node_id)
        if legs:
            key = f"minutes:{bill.node_id}:{int(bill.start.timestamp())}-{int(bill.end.timestamp())}"
            postings.append(Posting(legs=list(legs.items()), kind="minutes", idempotency_key=key,
                                    memo=f"{sum(bill.detail.values())} customer-minutes", reference=str(bill.node_id)))
            bill.posting = postings[-1]
    return postings


def suspend_customers_of(node_ids: set[int]) -> int:
    """Suspend the active customers of these nodes where the node (or the setting) asks for it."""
    if not node_ids:
        return 0
    default = suspend_default()
    wanted = [s.node_id for s in MinuteBillingState.objects.filter(node_id__in=node_ids)
              if (default if s.suspend_at_zero is None else s.suspend_at_zero)]
    count = 0
    for customer in Customer.objects.filter(node_id__in=wanted, status=Customer.Status.ACTIVE).order_by("id"):
        if lifecycle.suspend(customer, reason=SUSPEND_REASON).status == Customer.Status.SUSPENDED:
            count += 1
    return count


def resume_customers_of(node: AccountNode, wallet: Wallet, *, actor=None) -> int:
    """After a top-up: reactivate the node's customers that were suspended because its balance
    ran out (their latest suspension says so), if the wallet can spend again. A customer that
    is also overdue on its own invoices stays suspended (a payment reactivates it). Returns
    how many were reactivated. Call inside the top-up's transaction."""
    from ispcore.billing.models import Invoice
    from ispcore.core.models import AuditEvent

    available = wallet.available
    if available is not None and available <= 0:
        return 0
    suspended = list(Customer.objects.filter(node=node, status=Customer.Status.SUSPENDED)
                     .select_related("tenant").order_by("id"))
    if not suspended:
        return 0
    latest: dict[str, str] = {}
    for object_id, data in (AuditEvent.objects.filter(
            action="customer.suspended", object_type=Customer._meta.label_lower,
            object_id__in=[str(c.pk) for c in suspended]).order_by("id").values_list("object_id", "data")):
        latest[object_id] = (data or {}).get("reason", "")
    resumed = 0
    for customer in suspended:
        if latest.get(str(customer.pk)) != SUSPEND_REASON:
            continue
        today = timezone.localdate(timezone.now(), customer.tenant.tzinfo)
        if Invoice.objects.filter(customer=customer, status=Invoice.Status.OPEN, due_date__lt=today).exists():
            continue
        if lifecycle.reactivate(customer, reason="reseller_topped_up", actor=actor).status == Customer.Status.ACTIVE:
            resumed += 1
    return resumed


def bill_minutes(now: datetime | None = None) -> JobRun:
    """One tick: bill every node up to the last whole minute older than the lag, catching up
    in chunks, then suspend where a wallet ran out. Safe to run late, twice or concurrently."""
    if connection.vendor != "postgresql":
        raise RuntimeError("per-minute billing needs PostgreSQL (range_agg over accounting sessions)")
    now = now or timezone.now()
    target = floor_minute(now - timedelta(seconds=lag_seconds()))
    ensure_states(target)
    run = JobRun.objects.create(kind="minute_billing", key=target.isoformat())
    totals: dict = defaultdict(int)
    skip: set[int] = set()
    to_suspend: set[int] = set()
    try:
        while _bill_batch(target, skip, totals, to_suspend):
            run.progress = totals["nodes"]
        totals["suspended"] = suspend_customers_of(to_suspend)
    except Exception as exc:
        run.status, run.errors, run.finished_at = JobRun.Status.FAILED, [repr(exc)[:500]], timezone.now()
        run.save()
        raise
    run.status, run.finished_at = JobRun.Status.SUCCEEDED, timezone.now()
    run.result = {k: str(totals[k]) if k == "charged" else totals[k]
                  for k in ("nodes", "minutes", "postings", "charged", "refused", "suspended")}
    run.total = run.progress = totals["nodes"]
    run.save()
    return run


def _month_bounds(tenant, period: date) -> tuple[datetime, datetime]:
    tz = tenant.tzinfo
    start = datetime(period.year, period.month, 1, tzinfo=tz)
    following = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return start, datetime(following.year, following.month, 1, tzinfo=tz)


def issue_reseller_statements(tenant, period: date, *, now: datetime | None = None) -> JobRun:
    """Issue the month's statement to every postpaid reseller and sub-reseller of `tenant`
    that was billed per minute in it: customer-minutes, amount charged, and the debt to pay
    (its wallet's debt at issue time). Idempotent: a node that has its statement is skipped."""
    period = period.replace(day=1)
    now = now or timezone.now()
    start, end = _month_bounds(tenant, period)
    run, _created = JobRun.objects.get_or_create(kind="reseller_statements", key=f"{tenant.id}:{period.isoformat()}",
                                                 defaults={"tenant_id": tenant.id})
    sums = {row["node_id"]: row for row in MinuteCharge.objects.filter(
        tenant=tenant, node__billing_mode=AccountNode.BillingMode.POSTPAID, period_start__gte=start,
        period_start__lt=end).values("node_id").annotate(minutes=Sum("minutes"), charged=Sum("posted"))}
    done = set(ResellerStatement.objects.filter(node_id__in=sums, period=period).values_list("node_id", flat=True))
    issued = 0
    for node_id, row in sorted(sums.items()):
        if node_id in done:
            continue
        with transaction.atomic():
            wallet = lock_wallets(Wallet.objects.filter(node_id=node_id).values_list("id", flat=True))
            wallet = next(iter(wallet.values()))
            statement, created = ResellerStatement.objects.get_or_create(node_id=node_id, period=period, defaults={
                "tenant": tenant, "number": f"RS{period:%Y%m}-{node_id:05d}", "minutes": row["minutes"],
                "charged": row["charged"], "balance": wallet.balance, "credit_limit": wallet.credit_limit,
                "due": max(ZERO, -wallet.balance), "issued_at": now, "run": run,
                "due_date": timezone.localdate(now, tenant.tzinfo) + timedelta(days=tenant.invoice_due_days),
            })
            if created:
                audit.record("reseller_statement.issued", statement, minutes=statement.minutes,
                             charged=statement.charged, due=statement.due)
                audit.emit("reseller.statement", tenant_id=tenant.id, node_id=node_id, number=statement.number,
                           due=statement.due)
                issued += 1
    run.status, run.finished_at = JobRun.Status.SUCCEEDED, timezone.now()
    run.total = len(sums)
    run.progress = len(sums)
    run.result = {"issued": issued + run.result.get("issued", 0)}
    run.save()
    return run


STATEMENT_HEADERS = ("Day", "Customer-minutes", "Charged", "Statement", "Node", "Balance at issue", "Due")


def reseller_statement_xlsx(statement: ResellerStatement) -> bytes:
    """The statement as a spreadsheet: one row per day of the month (the tenant's time zone)
    with the customer-minutes and the amount charged that day, then the totals and the debt."""
    from django.db.models.functions import TruncDate

    from .documents import table_xlsx

    tenant = statement.tenant
    start, end = _month_bounds(tenant, statement.period)
    days = (MinuteCharge.objects.filter(node_id=statement.node_id, period_start__gte=start, period_start__lt=end)
            .annotate(day=TruncDate("period_start", tzinfo=tenant.tzinfo)).values("day")
            .annotate(minutes=Sum("minutes"), charged=Sum("posted")).order_by("day"))
    rows = [(d["day"], d["minutes"], d["charged"], None, None, None, None) for d in days]
    rows.append(("Total", statement.minutes, statement.charged, statement.number, statement.node.name,
                 statement.balance, statement.due))
    return table_xlsx(f"Statement {statement.number}", STATEMENT_HEADERS, rows)
