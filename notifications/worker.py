"""The sender: claim queued messages, submit them, record the results; any number of
worker processes on any number of hosts share the work through the database.

One round (:meth:`Sender.run_once`)::

    claim     SELECT ... FOR UPDATE SKIP LOCKED a batch of queued messages, set them
              'submitting' (lease ``SMS_CLAIM_LEASE_SECONDS``), COMMIT   <- before any write
    submit    one submit_sm per part through the route (window of several in flight)
    record    in ONE transaction: parts with the provider's ids, the new message state,
              the charge (accepted) or refund (rejected/failed), early receipts matched

The crash window is between the submit_sm write and the 'record' commit. A message
found 'submitting' with an expired lease (:func:`recover_stale`) is never resent
blindly: receipts stored since it was claimed for its number are taken as proof it
went out (the parts are rebuilt from them and it is charged); only if none arrived
within ``SMS_SUBMITTING_RESEND_AFTER`` seconds is it queued again. That timeout must
exceed the provider's receipt latency; receipts are committed before they are
acknowledged, so the SMSC redelivers any a crashed worker did not store.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from ispcore.core.bulk import bulk_set

from . import credit, reports
from .campaigns import finish_campaigns, in_quiet_hours, profile, start_due_campaigns
from .models import Campaign, DeliveryReport, Message, MessagePart, OptOut, ProviderRoute
from .numbers import to_provider_address
from .providers import ProviderUnavailable, SmsProvider, build_provider
from .smpp import Outcome, SubmitResult

log = logging.getLogger(__name__)
M = Message.State
P = MessagePart.State


def lease_seconds() -> int:
    return int(getattr(settings, "SMS_CLAIM_LEASE_SECONDS", 120))


def resend_after() -> int:
    return int(getattr(settings, "SMS_SUBMITTING_RESEND_AFTER", 3600))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


# -- providers ------------------------------------------------------------------------


def route_settings(route: ProviderRoute) -> dict:
    values = dict(route.settings)
    if route.secret:
        values[route.secret_key] = route.secret
    if route.kind == "smpp":
        values.setdefault("window", route.window)
        if route.max_rate:
            values.setdefault("max_rate", route.max_rate)
    return values


def build_route_providers(routes: Iterable[ProviderRoute] | None = None) -> dict[str, SmsProvider]:
    """One provider per active route, its receipts stored and its incoming messages put
    in the inbox. SMPP receipts go through the process's :class:`reports.ReceiptWriter`
    (group commit; the deliver_sm_resp is written once the batch committed); other
    providers store each receipt before their callback returns."""
    from .inbox import store_incoming

    routes = routes if routes is not None else ProviderRoute.objects.filter(is_active=True)
    return {r.name: build_provider(r.kind, r.name, route_settings(r),
                                   on_receipt=_queue_receipt if r.kind == "smpp" else _on_receipt,
                                   on_incoming=store_incoming) for r in routes}


def _queue_receipt(provider: str, receipt) -> Future:
    return reports.receipt_writer().submit(provider, receipt)


def _on_receipt(provider: str, receipt) -> None:
    try:
        reports.store_receipt(provider, receipt)
    except Exception:
        connection.close()  # the I/O thread keeps its own connection; drop a broken one
        raise


def refresh_balances(routes: Iterable[ProviderRoute] | None = None) -> dict[str, object]:
    """Store each active route's remaining credit as its provider reports it
    (``ProviderRoute.balance`` / ``balance_checked_at``). Routes whose provider has no
    balance call are left alone (None); one that cannot be asked keeps its last value and
    its error is returned as a string (and logged), the others are still asked."""
    out: dict[str, object] = {}
    for route in routes if routes is not None else ProviderRoute.objects.filter(is_active=True):
        try:
            provider = build_provider(route.kind, route.name, route_settings(route))
        except Exception as exc:
            out[route.name] = f"not configured: {exc}"
            log.warning("SMS route %s: balance not read: %s", route.name, exc)
            continue
        try:
            value = provider.balance()
        except Exception as exc:
            out[route.name] = str(exc) or type(exc).__name__
            log.warning("SMS route %s: balance not read: %s", route.name, exc)
            continue
        finally:
            provider.stop()
        out[route.name] = value
        if value is not None:
            ProviderRoute.objects.filter(pk=route.pk).update(balance=value, balance_checked_at=timezone.now())
    return out


# -- claim ----------------------------------------------------------------------------


def claimable_campaigns(now=None) -> list[int]:
    """Running campaigns whose messages may be sent now (promotional ones not in their
    tenant's quiet hours)."""
    ids = []
    for cid, tenant_id, promotional in Campaign.objects.filter(status=Campaign.Status.RUNNING) \
            .values_list("id", "tenant_id", "promotional"):
        if promotional and in_quiet_hours(profile(tenant_id), now):
            continue
        ids.append(cid)
    return ids


class Claimed:
    """What the sender needs of a claimed message (returned by the claim's UPDATE, no
    second query)."""

    __slots__ = ("pk", "tenant_id", "campaign_id", "promotional", "to_number", "sender", "text", "route_id",
                 "cost", "attempts")

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    @property
    def id(self) -> int:
        return self.pk


def claim(worker: str, limit: int, *, now=None) -> list[Claimed]:
    """Take up to ``limit`` sendable messages and commit them as 'submitting' under this
    worker's lease (one UPDATE over a ``FOR UPDATE SKIP LOCKED`` sub-select, so workers
    never wait for each other; it returns what the send needs). A promotional message to
    a number that opted out since it was materialised is blocked and refunded here instead."""
    now = now or timezone.now()
    campaigns = claimable_campaigns(now)
    until = now + timedelta(seconds=lease_seconds())
    table = Message._meta.db_table
    with transaction.atomic():
        with connection.cursor() as cursor:
            reports.execute_arrays(
                cursor,
                f"""UPDATE {table} SET state = %s, claimed_by = %s, claimed_until = %s, submitting_at = %s,
                           attempts = attempts + 1
                    WHERE id IN (SELECT id FROM {table}
                                 WHERE state = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
                                   AND (campaign_id IS NULL OR campaign_id = ANY(%s))
                                 ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
                    RETURNING {", ".join(_CLAIM_COLUMNS)}""",
                [M.SUBMITTING, worker, until, now, M.QUEUED, now, campaigns, limit])
            rows = sorted((Claimed(*row) for row in cursor.fetchall()), key=lambda m: m.pk)
        if not rows:
            return []
        blocked_numbers: set[tuple[int, str]] = set()
        promo: dict[int, set[str]] = defaultdict(set)
        for m in rows:
            if m.promotional:
                promo[m.tenant_id].add(m.to_number)
        for tenant_id, numbers in promo.items():
            blocked_numbers.update(OptOut.objects.filter(tenant_id=tenant_id, number__in=numbers)
                                   .values_list("tenant_id", "number"))
        blocked = [m for m in rows if m.promotional and (m.tenant_id, m.to_number) in blocked_numbers]
        if blocked:
            Message.objects.filter(pk__in=[m.pk for m in blocked]).update(
                state=M.BLOCKED, finished_at=now, refunded_at=now, error="opted out", claimed_by="",
                claimed_until=None)
            by_tenant: dict[int, list] = defaultdict(list)
            for m in blocked:
                if m.cost:
                    by_tenant[m.tenant_id].append((m.pk, m.cost))
            for tenant_id, pairs in by_tenant.items():
                credit.settle(tenant_id, refund_held=pairs)
        blocked_ids = {m.pk for m in blocked}
    return [m for m in rows if m.pk not in blocked_ids]


_CLAIM_COLUMNS = ("id", "tenant_id", "campaign_id", "promotional", "to_number", "sender", "text", "route_id",
                  "cost", "attempts")


# -- record ---------------------------------------------------------------------------


def _backoff(prof, attempts: int) -> timedelta:
    return timedelta(seconds=prof.retry_backoff_seconds * (2 ** max(0, attempts - 1)))


def record_results(worker: str, results: dict[int, tuple[str | None, list[SubmitResult], str]]) -> dict[str, int]:
    """Write what became of each claimed message: ``results`` maps message id ->
    (provider name or None, part results, error). One transaction; only messages still
    'submitting' under this worker's lease are touched.

    The usual outcomes (accepted, or rejected outright) cost a fixed handful of
    statements per batch: the receipts already stored for the new parts (they often beat
    the submit result), one UPDATE ... FROM unnest per outcome (guarded by state and
    lease, each message written once with the state its parts and those receipts give,
    RETURNING what the ledger needs), one INSERT of all parts with their states, the
    receipts linked, the ledger postings. Temporary failures and unanswered submits
    (rare) take the row-by-row path."""
    now = timezone.now()
    counts: dict[str, int] = defaultdict(int)
    route_ids = _route_ids()
    accepted: dict[int, tuple[int | None, list[SubmitResult]]] = {}
    rejected: dict[int, tuple[int | None, list[SubmitResult], str]] = {}
    others: dict[int, tuple[str | None, list[SubmitResult], str]] = {}
    providers: dict[int, str] = {}
    for mid, (provider, part_results, error) in results.items():
        outcomes = [r.outcome for r in part_results]
        route = route_ids.get(provider) if provider is not None else None
        if Outcome.ACCEPTED in outcomes:
            accepted[mid] = (route, part_results)
        elif outcomes and Outcome.PERMANENT in outcomes and Outcome.UNKNOWN not in outcomes \
                and Outcome.TEMPORARY not in outcomes:
            rejected[mid] = (route, part_results, (part_results[0].error or "rejected")[:255])
        else:
            others[mid] = (provider, part_results, error)
            continue
        providers[mid] = provider or ""
    table = Message._meta.db_table
    with transaction.atomic():
        charge: dict[int, list] = defaultdict(list)
        refund: dict[int, list] = defaultdict(list)
        refund_spent: dict[int, list] = defaultdict(list)
        written: list[int] = []
        with connection.cursor() as cursor:
            # receipts that beat the submit result: applied as the parts are written
            early = reports.stored_receipts(cursor, [(providers[mid], (r.message_key or "")[:80])
                                                     for mid in accepted for r in accepted[mid][1]
                                                     if r.outcome is Outcome.ACCEPTED])
            part_rows: dict[int, list[tuple]] = {}
            for mid, (_, part_results) in accepted.items():
                rows = []
                for r in part_results:
                    state = {Outcome.ACCEPTED: P.SUBMITTED, Outcome.PERMANENT: P.REJECTED}.get(r.outcome, P.UNKNOWN)
                    error = (r.error or "")[:120]
                    key = (r.message_key or "")[:80]
                    if r.outcome is Outcome.ACCEPTED:
                        state, error = reports.advance_part(state, error, early.get((providers[mid], key), ()))
                    rows.append((r, key, state, error))
                part_rows[mid] = rows
            if accepted:
                ids = sorted(accepted)
                states, finished, refunds = [], [], []
                for mid in ids:
                    part_states = [row[2] for row in part_rows[mid]]
                    state = reports.rollup_state(part_states, len(part_states))
                    states.append(state)
                    finished.append(now if state in reports.FINAL_MESSAGE else None)
                    refunds.append(state in reports.FAILED_MESSAGE and P.DELIVERED not in part_states)
                reports.execute_arrays(
                    cursor,
                    f"""UPDATE {table} AS m SET state = v.state, submitted_at = %s, charged_at = %s,
                               finished_at = v.finished_at, route_id = COALESCE(v.route_id, m.route_id),
                               refunded_at = CASE WHEN v.refund AND m.cost > 0 THEN %s::timestamptz END
                        FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::timestamptz[], %s::boolean[])
                             AS v(id, route_id, state, finished_at, refund)
                        WHERE m.id = v.id AND m.state = %s AND m.claimed_by = %s
                        RETURNING m.id, m.tenant_id, m.cost, m.refunded_at IS NOT NULL""",
                    [now, now, now, ids, [accepted[i][0] for i in ids], states, finished, refunds,
                     M.SUBMITTING, worker])
                for mid, tenant_id, cost, refunded in cursor.fetchall():
                    charge[tenant_id].append((mid, cost))
                    if refunded:  # a receipt already said it failed: charged and refunded at once
                        refund_spent[tenant_id].append((mid, cost))
                    written.append(mid)
                    counts["submitted"] += 1
            if rejected:
                ids = sorted(rejected)
                reports.execute_arrays(
                    cursor,
                    f"""UPDATE {table} AS m SET state = %s, submitted_at = %s, finished_at = %s, refunded_at = %s,
                               error = v.error, route_id = COALESCE(v.route_id, m.route_id)
                        FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS v(id, route_id, error)
                        WHERE m.id = v.id AND m.state = %s AND m.claimed_by = %s
                        RETURNING m.id, m.tenant_id, m.cost""",
                    [M.REJECTED, now, now, now, ids, [rejected[i][0] for i in ids], [rejected[i][2] for i in ids],
                     M.SUBMITTING, worker])
                for mid, tenant_id, cost in cursor.fetchall():
                    refund[tenant_id].append((mid, cost))
                    written.append(mid)
                    counts["rejected"] += 1
                for mid in rejected:
                    part_rows[mid] = [(r, (r.message_key or "")[:80],
                                       P.REJECTED if r.outcome is Outcome.PERMANENT else P.UNKNOWN,
                                       (r.error or "")[:120]) for r in rejected[mid][1]]
            if len(written) < len(accepted) + len(rejected):
                counts["lost_lease"] += len(accepted) + len(rejected) - len(written)
            cols: list[list] = [[] for _ in range(8)]
            for mid in sorted(written):
                provider = providers[mid]
                for r, key, state, error in part_rows[mid]:
                    for col, value in zip(cols, (mid, r.part_index, provider, (r.message_id or "")[:80], key, state,
                                                 error, now), strict=True):
                        col.append(value)
            if cols[0]:
                reports.execute_arrays(
                    cursor,
                    f"""INSERT INTO {MessagePart._meta.db_table}
                            (message_id, "index", provider, provider_message_id, message_key, state, error,
                             submitted_at, updated_at)
                        SELECT *, %s FROM unnest(%s::bigint[], %s::smallint[], %s::varchar[], %s::varchar[],
                                                 %s::varchar[], %s::varchar[], %s::varchar[], %s::timestamptz[])
                        RETURNING id, provider, message_key""",
                    [now, *cols])
                link_ids, link_parts = [], []
                for pid, provider, key in cursor.fetchall():
                    for rid, _, _ in early.get((provider, key), ()):
                        link_ids.append(rid)
                        link_parts.append(pid)
                if link_ids:
                    reports.execute_arrays(
                        cursor,
                        f"""UPDATE {DeliveryReport._meta.db_table} AS d
                            SET part_id = v.part_id, matched_at = %s, processed = true
                            FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, part_id) WHERE d.id = v.id""",
                        [now, link_ids, link_parts])
                    counts["early_receipts"] += len(link_ids)
        if others:
            _record_others(worker, others, now, route_ids, counts, refund)
        # last: the tenant's wallet rows stay locked from here to the commit, and every
        # worker charging this tenant waits for them
        for tenant_id in set(charge) | set(refund) | set(refund_spent):
            credit.settle(tenant_id, charge=[p for p in charge.get(tenant_id, []) if p[1]],
                          refund_held=[p for p in refund.get(tenant_id, []) if p[1]],
                          refund_spent=[p for p in refund_spent.get(tenant_id, []) if p[1]])
    return dict(counts)


def _record_others(worker: str, results: dict, now, route_ids: dict[str, int], counts: dict[str, int],
                   refund: dict[int, list]) -> None:
    """Temporary failures and unanswered submits, row by row (rare)."""
    mine = {m.pk: m for m in Message.objects.select_for_update()
            .filter(pk__in=list(results), state=M.SUBMITTING, claimed_by=worker)}
    cancelled = _cancelled_campaigns({m.campaign_id for m in mine.values()})
    updates: list[Message] = []
    for mid, (provider, part_results, error) in results.items():
        m = mine.get(mid)
        if m is None:
            counts["lost_lease"] += 1
            continue
        outcomes = [r.outcome for r in part_results]
        if provider is not None:
            m.route_id = route_ids.get(provider, m.route_id)
        if Outcome.UNKNOWN in outcomes:
            # Written, no answer: it may be live. Leave it 'submitting' with the lease
            # expired: recover_stale decides from the receipts, never resends at once.
            m.claimed_until = now
            m.error = "no submit_sm_resp"[:255]
            counts["unknown"] += 1
        else:
            prof = profile(m.tenant_id)
            if m.campaign_id in cancelled:
                m.state, m.finished_at, m.refunded_at = M.CANCELLED, now, now
                m.claimed_by, m.claimed_until = "", None
                refund[m.tenant_id].append((m.pk, m.cost))
                counts["cancelled"] += 1
            elif m.attempts <= prof.retry_count:
                m.state, m.next_attempt_at = M.QUEUED, now + _backoff(prof, m.attempts)
                m.claimed_by, m.claimed_until = "", None
                counts["retry"] += 1
            else:
                m.state, m.finished_at, m.refunded_at = M.FAILED, now, now
                refund[m.tenant_id].append((m.pk, m.cost))
                counts["failed"] += 1
            m.error = (error or (part_results[0].error if part_results else "") or "temporary failure")[:255]
        updates.append(m)
    bulk_set(updates, ["state", "route", "finished_at", "refunded_at", "next_attempt_at", "claimed_by",
                       "claimed_until", "error"])


def _cancelled_campaigns(ids: set) -> set[int]:
    """Of these campaigns, the cancelled ones: their messages are not queued again."""
    ids = {i for i in ids if i}
    return set(Campaign.objects.filter(pk__in=ids, status=Campaign.Status.CANCELLED).values_list("id", flat=True)) \
        if ids else set()


def _route_ids() -> dict[str, int]:
    return dict(ProviderRoute.objects.values_list("name", "id"))


# -- recovery -------------------------------------------------------------------------


def recover_stale(*, now=None, limit: int = 500) -> dict[str, int]:
    """Settle messages left 'submitting' by a worker that died (lease expired).

    Receipts for the message's number that arrived since it was claimed, and that no
    part claims yet, prove it was accepted: its parts are rebuilt from them (ids,
    states), it is charged, and it counts as submitted. Without such proof it is only
    queued again once ``SMS_SUBMITTING_RESEND_AFTER`` has passed since the claim."""
    now = now or timezone.now()
    counts: dict[str, int] = defaultdict(int)
    with transaction.atomic():
        stale = list(Message.objects.select_for_update(skip_locked=True)
                     .filter(state=M.SUBMITTING, claimed_until__lt=now).order_by("id")[:limit])
        if not stale:
            return {}
        numbers = {to_provider_address(m.to_number) for m in stale}
        pool: dict[str, list[DeliveryReport]] = defaultdict(list)
        for r in (DeliveryReport.objects.select_for_update().filter(part__isnull=True, recipient__in=numbers)
                  .order_by("id")):
            pool[r.recipient].append(r)
        parts, charged, refunds = [], defaultdict(list), defaultdict(list)
        cancelled = _cancelled_campaigns({m.campaign_id for m in stale})
        for m in stale:
            found = [r for r in pool.get(to_provider_address(m.to_number), [])
                     if m.submitting_at is None or r.received_at >= m.submitting_at - timedelta(seconds=5)]
            if found:
                taken = found[: m.parts]
                for r in taken:
                    pool[r.recipient].remove(r)
                for index, r in enumerate(taken):
                    parts.append(MessagePart(message=m, index=index, provider=r.provider,
                                             provider_message_id=r.message_id, message_key=r.message_key,
                                             state=P.SUBMITTED, submitted_at=m.submitting_at or now))
                m.state, m.submitted_at, m.charged_at = M.SUBMITTED, m.submitting_at or now, now
                m.route_id = _route_ids().get(taken[0].provider, m.route_id)
                m.error = "recovered from receipts"
                charged[m.tenant_id].append((m.pk, m.cost))
                counts["recovered"] += 1
            elif m.submitting_at is None or now - m.submitting_at >= timedelta(seconds=resend_after()):
                m.claimed_by, m.claimed_until, m.next_attempt_at = "", None, None
                if m.campaign_id in cancelled:
                    m.state, m.error = M.CANCELLED, "campaign cancelled; no receipt after crash"
                    m.finished_at = m.refunded_at = now
                    refunds[m.tenant_id].append((m.pk, m.cost))
                    counts["cancelled"] += 1
                else:
                    m.state, m.error = M.QUEUED, "no receipt after crash: resent"
                    counts["requeued"] += 1
            else:
                counts["waiting"] += 1
        changed = [m for m in stale if m.state != M.SUBMITTING]
        bulk_set(changed, ["state", "submitted_at", "charged_at", "route", "error", "claimed_by",
                           "claimed_until", "next_attempt_at", "finished_at", "refunded_at"])
        created = MessagePart.objects.bulk_create(parts)
        for tenant_id in set(charged) | set(refunds):
            credit.settle(tenant_id, charge=[p for p in charged.get(tenant_id, []) if p[1]],
                          refund_held=[p for p in refunds.get(tenant_id, []) if p[1]])
        if created:
            # the receipts that proved the send also carry its state: match them now
            reports.match_parts(created)
    return dict(counts)


# -- the loop -------------------------------------------------------------------------


class Router:
    """Submits a message through its route, failing over to the next available route by
    priority when one raises ProviderUnavailable (never on a per-message rejection)."""

    def __init__(self, providers: dict[str, SmsProvider]):
        self.providers = providers
        names = dict(ProviderRoute.objects.filter(name__in=list(providers)).values_list("id", "name"))
        order = list(ProviderRoute.objects.filter(name__in=list(providers)).order_by("priority", "id")
                     .values_list("name", flat=True))
        self.by_id = names
        self.order = order

    def submit(self, m: Message, *, timeout: float) -> tuple[str | None, list[Future], str]:
        first = self.by_id.get(m.route_id)
        candidates = ([first] if first else []) + [n for n in self.order if n != first]
        errors = []
        for name in candidates:
            provider = self.providers[name]
            if name != first and not provider.available:
                continue
            try:
                return name, provider.submit(to_provider_address(m.to_number), m.sender, m.text, ref=m.pk,
                                             timeout=timeout), ""
            except ProviderUnavailable as exc:
                errors.append(str(exc))
        return None, [], "; ".join(errors) or "no SMS route available"


class Sender:
    """A worker: owns provider connections and runs claim/submit/record rounds."""

    def __init__(self, providers: dict[str, SmsProvider] | None = None, *, name: str | None = None,
                 batch_size: int = 200, submit_timeout: float = 30.0):
        self.providers = providers if providers is not None else build_route_providers()
        self.router = Router(self.providers)
        self.name = name or worker_name()
        self.batch_size = batch_size
        self.submit_timeout = submit_timeout
        self._last_housekeeping = 0.0
        #: seconds spent per phase and messages handled, over the sender's life (all loops)
        self.timings: dict[str, float] = defaultdict(float)

    def start(self) -> None:
        # The providers' I/O threads store every receipt before answering it; with the
        # default 5 ms GIL switch interval each of their database round trips waits
        # behind this thread's CPU work (measured: ~160 receipts/s). 0.5 ms lets them in.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        for p in self.providers.values():
            try:
                p.start()
            except Exception:  # a route that is down now is skipped by failover
                log.warning("SMS route %s did not start", p.name, exc_info=True)

    def stop(self) -> None:
        # store (and answer) the receipts queued so far while the binds are still up; what
        # arrives while they close is stored at the end, unanswered: the SMSC redelivers it
        # (a duplicate receipt row is harmless, matching is idempotent)
        reports.receipt_writer().stop()
        for p in self.providers.values():
            p.stop()
        reports.receipt_writer().stop()

    def housekeeping(self) -> dict[str, int]:
        out = dict(recover_stale())
        out["receipts"] = 0
        while (n := reports.apply_reports()) > 0:
            out["receipts"] += n
            if n < 2000:
                break
        start_due_campaigns()
        finish_campaigns()
        return out

    def run_once(self, name: str | None = None) -> dict[str, int]:
        """One claim/submit/record round; returns counts (empty when nothing to do)."""
        name = name or self.name
        timings = self.timings
        t0 = time.perf_counter()
        if t0 - self._last_housekeeping > 1.0:
            self._last_housekeeping = t0
            self.housekeeping()
        else:
            reports.apply_reports()
        t1 = time.perf_counter()
        timings["receipts"] += t1 - t0
        batch = claim(name, self.batch_size)
        t2 = time.perf_counter()
        timings["claim"] += t2 - t1
        if not batch:
            return {}
        pending: dict[int, tuple[str | None, list[Future], str]] = {}
        for m in batch:
            try:
                pending[m.pk] = self.router.submit(m, timeout=self.submit_timeout)
            except Exception as exc:  # bad address / text: a permanent failure of this message
                log.warning("SMS %s cannot be submitted: %s", m.pk, exc)
                future: Future = Future()
                future.set_result(SubmitResult(m.pk, 0, 1, Outcome.PERMANENT, error=str(exc)[:120]))
                pending[m.pk] = (None, [future], str(exc))
        all_futures = [f for _, fs, _ in pending.values() for f in fs]
        wait_futures(all_futures, timeout=self.submit_timeout + 60)
        results = {}
        for mid, (provider, futures, error) in pending.items():
            parts = [f.result() if f.done() else SubmitResult(mid, i, len(futures), Outcome.UNKNOWN, error="no result")
                     for i, f in enumerate(futures)]
            results[mid] = (provider, parts, error)
        t3 = time.perf_counter()
        timings["submit"] += t3 - t2
        counts = record_results(name, results)
        timings["record"] += time.perf_counter() - t3
        timings["rounds"] += 1
        timings["messages"] += len(batch)
        timings["parts"] += len(all_futures)
        counts["claimed"] = len(batch)
        return counts

    def timing_summary(self) -> str:
        """Where the time went, per round (for the worker's exit log and the benchmark)."""
        t = self.timings
        rounds = t.get("rounds", 0)
        if not rounds:
            return "no rounds"
        per = ", ".join(f"{k} {t.get(k, 0.0) / rounds * 1000:.0f} ms" for k in ("receipts", "claim", "submit", "record"))
        return (f"{int(rounds)} rounds, {int(t['messages'])} messages, {int(t['parts'])} parts; per round: {per}; "
                f"receipts stored in {reports.receipt_writer().batches} commits")

    def run(self, *, stop: Callable[[], bool] = lambda: False, idle_sleep: float = 0.2,
            max_seconds: float | None = None, threads: int = 1) -> None:
        """Loop until ``stop()`` (or ``max_seconds``); sleeps briefly when idle.

        ``threads`` > 1 runs that many claim/submit/record loops over the same provider
        binds (each with its own database connection and claim name), so one loop's
        database work overlaps another's submits."""
        self.start()
        began = time.monotonic()

        def loop(name: str) -> None:
            try:
                while not stop():
                    if max_seconds is not None and time.monotonic() - began > max_seconds:
                        break
                    try:
                        counts = self.run_once(name)
                    except Exception:
                        log.exception("SMS worker round failed; retrying")
                        close_old_connections()
                        time.sleep(1.0)
                        continue
                    if not counts:
                        time.sleep(idle_sleep)
            finally:
                connection.close()

        extra = [threading.Thread(target=loop, args=(f"{self.name}/{i}",), daemon=True) for i in range(1, threads)]
        try:
            for t in extra:
                t.start()
            loop(self.name)
            for t in extra:
                t.join()
        finally:
            self.stop()
