"""The in-process authorization snapshot: everything an Access-Request needs,
so authentication never waits for the database.

* NAS by source address (all tenants), customers by ``(tenant_id, username)``
  with their package limits, open-session count and quota usage.
* Loaded at start (:meth:`Snapshot.load_all`), then kept fresh by a background
  thread (:meth:`Snapshot.start_sync`) listening on Redis pub/sub:
  :func:`publish_invalidation` (sent on commit of a Customer/Package/Nas/price
  change, see ``radius.apps``) reloads one tenant or a few customers;
  :func:`publish_usage` (sent by the accounting writer after each commit)
  reloads open-session counts and quota usage of the customers concerned.
  A full reload also runs every ``RADIUS_SNAPSHOT_REFRESH`` seconds as a
  safety net for lost messages.
* When the database or Redis is down the last snapshot keeps serving; reloads
  are retried.

Entries are replaced whole, never mutated in place (except the usage
counters), so the event loop thread can read them without locks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Count, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from ispcore.core.crypto import decrypt

logger = logging.getLogger(__name__)



def channel(kind: str) -> str:
    """Pub/sub channel name. Channels are global to a Redis server (not per
    database number), so they carry a namespace: ``RADIUS_CHANNEL_PREFIX``, by
    default the database name, keeping two deployments (or test runs) that
    share one Redis apart."""
    prefix = getattr(settings, "RADIUS_CHANNEL_PREFIX", None)
    if prefix is None:
        prefix = str(settings.DATABASES["default"].get("NAME", "")).rsplit("/", 1)[-1]
    return f"radius:{prefix}:snapshot:{kind}"


@dataclass(frozen=True, slots=True)
class NasEntry:
    id: int
    tenant_id: int
    ip_address: str
    secret: bytes
    require_message_authenticator: bool
    nas_type: str
    coa_port: int


@dataclass(slots=True)
class CustomerEntry:
    id: int
    tenant_id: int
    username: str
    password: str
    customer_type: str
    status: str
    #: Expiry plus the package's grace, as a POSIX timestamp (None: never).
    expires_ts: float | None
    simultaneous_use: int
    mac_address: str
    static_ip: str | None
    package_id: int | None
    package_active: bool
    rate_limit: str
    data_quota_bytes: int | None
    time_quota_seconds: int | None
    period_start: datetime | None
    expires_at: datetime | None = None
    #: Extra reply attributes from IPAM: (dictionary name, value) pairs (shared empty tuple by default).
    addresses: list | tuple = ()
    open_sessions: int = 0
    used_bytes: int = 0
    used_seconds: int = 0
    #: What MS-CHAPv2 needs of the password (:func:`radius.crypto.mschapv2_prepare`: the NT
    #: hash, its hash and the three DES keys, 56 octets), computed on the first MS-CHAPv2
    #: login and kept with the entry (a snapshot reload after a password change makes a new
    #: entry).
    _mschap: bytes | None = None

    @property
    def password_bytes(self) -> bytes:
        return self.password.encode("utf-8")

    @property
    def mschap(self) -> bytes:
        if self._mschap is None:
            from . import crypto

            self._mschap = crypto.mschapv2_prepare(crypto.nt_password_hash(self.password))
        return self._mschap

    @property
    def nt_hash(self) -> bytes:
        return self.mschap[:16]


def _token_key(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=16).digest()


_clients: dict = {}


def _redis():
    """One client (connection pool) per Redis URL and process."""
    import redis

    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=0.5)
    return client


def publish_invalidation(
    tenant_id: int, customer_ids: list[int] | None = None, *, packages: list[int] | None = None, nas: bool = False
) -> None:
    """Tell every RADIUS worker to reload what changed in a tenant: some customers,
    some packages (their customers' limits), the NAS list, or (no detail given)
    the whole tenant.

    Call it after commit; a failure to reach Redis is logged, not raised (the
    periodic refresh catches up)."""
    payload: dict = {"tenant": tenant_id, "customers": customer_ids}
    if packages:
        payload["packages"] = packages
    if nas:
        payload["nas"] = True
    message = json.dumps(payload)
    try:
        _redis().publish(channel("invalidate"), message)
    except Exception:
        logger.warning("could not publish RADIUS snapshot invalidation for tenant %s", tenant_id, exc_info=True)


#: Identifies this process in usage messages, so a worker skips its own.
PROCESS_TAG = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def publish_usage(customer_ids: list[int]) -> None:
    """Tell every RADIUS worker that sessions/usage of these customers changed."""
    if not customer_ids:
        return
    try:
        _redis().publish(channel("usage"), json.dumps({"from": PROCESS_TAG, "customers": customer_ids}))
    except Exception:
        logger.debug("could not publish RADIUS usage change", exc_info=True)


def _period_start(expires_at: datetime | None, billing_mode: str, validity: int) -> datetime | None:
    if expires_at is None:
        return None
    if billing_mode == "prepaid_hours":
        return expires_at - timedelta(hours=validity)
    return expires_at - timedelta(days=validity)


_IPAM_KEYS = {
    "framed_ip": "Framed-IP-Address",
    "framed_ipv6_prefix": "Framed-IPv6-Prefix",
    "delegated_ipv6_prefix": "Delegated-IPv6-Prefix",
}


@dataclass(frozen=True, slots=True)
class PackageTerms:
    """What the snapshot needs from a package, derived once per package."""

    is_active: bool
    rate_limit: str
    data_quota_bytes: int | None
    time_quota_seconds: int | None
    grace_seconds: int
    billing_mode: str
    validity: int


def _package_terms(package_ids) -> dict[int, PackageTerms]:
    from ispcore.catalog.models import Package

    if not package_ids:
        return {}
    return {
        p.id: PackageTerms(
            is_active=p.is_active,
            rate_limit=p.rate_limit,
            data_quota_bytes=p.data_quota_mb * 1024 * 1024 if p.data_quota_mb else None,
            time_quota_seconds=p.time_quota_minutes * 60 if p.time_quota_minutes else None,
            grace_seconds=60 * (getattr(p, "grace_minutes", 0) or 0),
            billing_mode=p.billing_mode,
            validity=p.validity,
        )
        for p in Package.objects.filter(id__in=list(package_ids))
    }


def _apply_package(entry: CustomerEntry, terms: PackageTerms | None) -> None:
    """Set the package-derived fields of an entry (no package: not allowed online)."""
    expires_at = entry.expires_at
    if terms is None:
        entry.package_active = False
        entry.rate_limit = ""
        entry.data_quota_bytes = entry.time_quota_seconds = entry.period_start = None
        entry.expires_ts = expires_at.timestamp() if expires_at else None
        return
    entry.package_active = terms.is_active
    entry.rate_limit = terms.rate_limit
    entry.data_quota_bytes = terms.data_quota_bytes
    entry.time_quota_seconds = terms.time_quota_seconds
    # service is kept for the package's grace minutes after expiry
    entry.expires_ts = expires_at.timestamp() + terms.grace_seconds if expires_at else None
    entry.period_start = _period_start(expires_at, terms.billing_mode, terms.validity)


def _reply_addresses(customer_ids: list[int]) -> dict[int, list]:
    """Optional IPAM hook: ``ipam.selectors.reply_addresses(ids)`` gives
    ``{id: {framed_ip, framed_ipv6_prefix, delegated_ipv6_prefix}}`` (None where
    unassigned); returned here as ``{id: [(dictionary name, value)]}``."""
    try:
        from ipam.selectors import reply_addresses
    except ImportError:
        return {}
    try:
        result = reply_addresses(customer_ids) or {}
    except Exception:
        logger.warning("ipam.selectors.reply_addresses failed; replying without IPAM addresses", exc_info=True)
        return {}
    normalised = {}
    for cid, value in result.items():
        pairs = value.items() if isinstance(value, dict) else value
        attrs = [(_IPAM_KEYS.get(name, name), v) for name, v in pairs if v]
        if attrs:
            normalised[cid] = attrs
    return normalised


def _terms(entry: CustomerEntry) -> tuple:
    """Everything of an entry that comes from the database (not usage, not caches)."""
    return (entry.tenant_id, entry.username, entry.password, entry.customer_type, entry.status, entry.expires_ts,
            entry.simultaneous_use, entry.mac_address, entry.static_ip, entry.package_id, entry.package_active,
            entry.rate_limit, entry.data_quota_bytes, entry.time_quota_seconds, entry.period_start, entry.expires_at)


class Snapshot:
    """NASes and customers for the hot path; see the module docstring."""

    def __init__(self) -> None:
        self.nases: dict[str, NasEntry] = {}
        self.customers: dict[tuple[int, str], CustomerEntry] = {}
        self.by_id: dict[int, CustomerEntry] = {}
        self.loaded_at = 0.0
        self.generation = 0
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._load_lock = threading.Lock()
        self._decrypted: dict[bytes, str] = {}
        #: Set once the Redis listener is subscribed.
        self.subscribed = threading.Event()
        #: Freeze each new generation out of the garbage collector's reach (radiusd
        #: processes; not in tests, where it would keep every test's garbage).
        self.freeze_gc = False

    @contextlib.contextmanager
    def _loading(self):
        """One load or reload at a time. With ``freeze_gc`` (radiusd processes), the
        objects it creates (hundreds of thousands for a large tenant) are kept out of
        the garbage collector's reach: a full collection walking them stopped every
        thread for 50-250 ms, a latency spike for every request queued meanwhile
        (``gc_pause_seconds``). So collections wait while the entries are built
        (else each one walks the half-built snapshot), then ``gc.freeze`` (a
        constant-time list splice) moves everything alive out of the collector's
        generations. Entries hold no reference cycles: replaced ones are still
        freed by reference counting."""
        with self._load_lock:
            if not self.freeze_gc:
                yield
                return
            gc.disable()
            try:
                yield
            finally:
                gc.freeze()
                gc.enable()

    # -- lookups ---------------------------------------------------------

    def nas(self, ip: str) -> NasEntry | None:
        return self.nases.get(ip)

    def customer(self, tenant_id: int, username: str) -> CustomerEntry | None:
        return self.customers.get((tenant_id, username))

    # -- loading ---------------------------------------------------------

    def load_all(self) -> None:
        """Load every active tenant's NASes and customers (replaces the snapshot)."""
        from ispcore.accounts.models import Tenant
        from ispcore.subscribers.models import Nas

        with self._loading():
            nases = {}
            for nas in Nas.objects.filter(is_active=True, tenant__is_active=True):
                nases[nas.ip_address] = self._nas_entry(nas)
            tenant_ids = list(Tenant.objects.filter(is_active=True).values_list("id", flat=True))
            customers, by_id = self._load_customers(Q(tenant_id__in=tenant_ids), tenant_ids)
            self.nases = nases
            self.customers = customers
            self.by_id = by_id
            self.loaded_at = time.monotonic()
            self.generation += 1
        logger.info("RADIUS snapshot loaded: %d NAS, %d customers", len(nases), len(by_id))

    def reload_tenant(self, tenant_id: int) -> None:
        from ispcore.subscribers.models import Nas

        with self._loading():
            nases = {ip: n for ip, n in self.nases.items() if n.tenant_id != tenant_id}
            for nas in Nas.objects.filter(tenant_id=tenant_id, is_active=True, tenant__is_active=True):
                nases[nas.ip_address] = self._nas_entry(nas)
            loaded, loaded_by_id = self._load_customers(Q(tenant_id=tenant_id, tenant__is_active=True), [tenant_id])
            customers = {k: v for k, v in self.customers.items() if k[0] != tenant_id}
            customers.update(loaded)
            by_id = {k: v for k, v in self.by_id.items() if v.tenant_id != tenant_id}
            by_id.update(loaded_by_id)
            self.nases, self.customers, self.by_id = nases, customers, by_id
            self.generation += 1

    def reload_customers(self, customer_ids: list[int]) -> None:
        with self._loading():
            loaded, loaded_by_id = self._load_customers(Q(id__in=customer_ids, tenant__is_active=True))
            customers = dict(self.customers)
            by_id = dict(self.by_id)
            for cid in customer_ids:
                old = by_id.pop(cid, None)
                if old is not None:
                    customers.pop((old.tenant_id, old.username), None)
            customers.update(loaded)
            by_id.update(loaded_by_id)
            self.customers, self.by_id = customers, by_id
            self.generation += 1

    def reload_nases(self, tenant_id: int) -> None:
        """Reload one tenant's NASes only (a NAS was added, changed or removed)."""
        from ispcore.subscribers.models import Nas

        with self._loading():
            nases = {ip: n for ip, n in self.nases.items() if n.tenant_id != tenant_id}
            for nas in Nas.objects.filter(tenant_id=tenant_id, is_active=True, tenant__is_active=True):
                nases[nas.ip_address] = self._nas_entry(nas)
            self.nases = nases
            self.generation += 1

    def reload_packages(self, package_ids: list[int]) -> None:
        """Re-derive the package fields of every customer on these packages,
        without reloading the customers (a package change in a 100k-customer
        tenant applies in milliseconds). Entries are copied, not changed in place."""
        with self._loading():
            terms = _package_terms(package_ids)
            wanted = set(package_ids)
            customers = dict(self.customers)
            by_id = dict(self.by_id)
            quota = []
            for cid, entry in self.by_id.items():
                if entry.package_id in wanted:
                    fresh = dataclasses.replace(entry)
                    _apply_package(fresh, terms.get(entry.package_id))
                    by_id[cid] = fresh
                    customers[(fresh.tenant_id, fresh.username)] = fresh
                    if fresh.data_quota_bytes or fresh.time_quota_seconds:
                        quota.append(fresh)
            if quota:  # the quota period may have changed with the package
                self._apply_usage(quota)
            self.customers, self.by_id = customers, by_id
            self.generation += 1

    def refresh_usage(self, customer_ids: list[int], open_counts: dict[int, int] | None = None) -> list[int]:
        """Reload open-session counts and quota usage of some customers (2 queries).

        ``open_counts`` (customer id -> open sessions, read by the caller after its
        commit) sets the counts without a query; only customers with a quota are
        then reloaded (their usage). Returns the ids whose counts or usage were
        refreshed (with ``open_counts``: those in it and those with a quota)."""
        entries = [self.by_id[c] for c in customer_ids if c in self.by_id]
        if open_counts is None:
            if entries:
                self._apply_usage(entries)
            return list(customer_ids)
        quota = []
        for e in entries:
            if e.data_quota_bytes or e.time_quota_seconds:
                quota.append(e)
            elif e.id in open_counts:
                e.open_sessions = open_counts[e.id]
        if quota:
            self._apply_usage(quota)
        return sorted(set(open_counts) | {e.id for e in quota})

    @staticmethod
    def _nas_entry(nas) -> NasEntry:
        return NasEntry(
            id=nas.id,
            tenant_id=nas.tenant_id,
            ip_address=nas.ip_address,
            secret=nas.secret.encode("utf-8"),
            require_message_authenticator=nas.require_message_authenticator,
            nas_type=nas.nas_type,
            coa_port=nas.coa_port,
        )

    def _plain(self, token: str | None) -> str:
        """Decrypt a stored password token, remembering the result: a tenant reload
        then decrypts only what changed (Fernet is most of a reload's cost). The
        memo is keyed by a 16-octet digest of the token, not the ~140-character
        token itself (14 MB less for 100,000 customers)."""
        if not token:
            return ""
        digest = _token_key(token)
        plain = self._decrypted.get(digest)
        if plain is None:
            plain = self._decrypted[digest] = decrypt(token)
        return plain

    def _load_customers(self, where: Q, tenant_ids: list[int] | None = None) -> tuple[dict, dict]:
        """Load customers matching ``where``. ``tenant_ids`` (whole tenants) lets
        the usage queries filter by tenant instead of by long id lists."""
        from ispcore.subscribers.models import Customer

        customers: dict[tuple[int, str], CustomerEntry] = {}
        by_id: dict[int, CustomerEntry] = {}
        customers_qs = Customer.objects.filter(where)
        package_ids = set(customers_qs.exclude(package_id=None).values_list("package_id", flat=True).distinct())
        packages = _package_terms(package_ids)
        # streamed in chunks (a server-side cursor), so the rows of 100,000 customers and
        # their strings never exist all at once next to the entries made from them
        rows = (
            customers_qs.annotate(password_token=Cast("password", output_field=TextField()))
            .values_list(
                "id", "tenant_id", "username", "password_token", "customer_type", "status", "expires_at",
                "simultaneous_use", "mac_address", "static_ip", "package_id",
            )
            .iterator(chunk_size=5000)
        )
        seen_tokens: set[bytes] = set()
        intern = sys.intern  # a handful of distinct values: one string object each
        for cid, tenant_id, username, token, ctype, status, expires_at, simultaneous, mac, static_ip, pid in rows:
            if token:
                seen_tokens.add(_token_key(token))
            entry = CustomerEntry(
                id=cid,
                tenant_id=tenant_id,
                username=username,
                password=self._plain(token),
                customer_type=intern(ctype),
                status=intern(status),
                expires_ts=None,
                simultaneous_use=simultaneous,
                mac_address=(mac or "").upper(),
                static_ip=static_ip,
                package_id=pid,
                package_active=False,
                rate_limit="",
                data_quota_bytes=None,
                time_quota_seconds=None,
                period_start=None,
                expires_at=expires_at,
            )
            _apply_package(entry, packages.get(pid))
            current = self.by_id.get(cid)
            if current is not None and _terms(current) == _terms(entry):
                # unchanged: keep the entry in service (and its MS-CHAPv2 values) instead of
                # a copy, so a full reload of 100,000 customers does not hold two snapshots
                entry = current
            customers[(tenant_id, username)] = entry
            by_id[cid] = entry
        if tenant_ids is not None and len(self._decrypted) > 2 * len(seen_tokens) + 10000:
            # forget tokens of changed passwords now and then (bounded memory)
            self._decrypted = {t: self._decrypted[t] for t in seen_tokens if t in self._decrypted}
        if by_id:
            addresses = _reply_addresses(list(by_id))
            for cid, entry in by_id.items():
                attrs = addresses.get(cid, ())
                if entry.addresses != attrs:  # one assignment: a live entry is never seen half-updated
                    entry.addresses = attrs
            self._apply_usage(list(by_id.values()), tenant_ids)
        return customers, by_id

    @staticmethod
    def _apply_usage(entries: list[CustomerEntry], tenant_ids: list[int] | None = None) -> None:
        from .models import AccountingSession

        counts: dict[int, int] = {}
        open_sessions = AccountingSession.objects.filter(stopped_at__isnull=True)
        if tenant_ids is not None:
            batches = [open_sessions.filter(tenant_id__in=tenant_ids)]
        else:
            ids = [e.id for e in entries]
            batches = [open_sessions.filter(customer_id__in=ids[i : i + 10000]) for i in range(0, len(ids), 10000)]
        for queryset in batches:
            counts.update(
                queryset.exclude(customer_id=None)
                .values_list("customer_id")
                .annotate(n=Count("id"))
                .values_list("customer_id", "n")
            )
        quota = [e for e in entries if (e.data_quota_bytes or e.time_quota_seconds) and e.period_start]
        used: dict[int, tuple[int, int]] = {}
        if quota:
            since = min(e.period_start for e in quota)
            starts = {e.id: e.period_start for e in quota}
            rows = AccountingSession.objects.filter(
                customer_id__in=list(starts), updated_at__gte=since
            ).values_list("customer_id", "updated_at", "input_octets", "output_octets", "session_time")
            for cid, updated_at, inp, out, secs in rows:
                if updated_at >= starts[cid]:
                    b, s = used.get(cid, (0, 0))
                    used[cid] = (b + inp + out, s + secs)
        for e in entries:
            e.open_sessions = counts.get(e.id, 0)
            e.used_bytes, e.used_seconds = used.get(e.id, (0, 0))

    # -- background sync -------------------------------------------------

    def start_sync(self) -> None:
        """Start the Redis listener and the reloader threads (daemon).

        Start it before :meth:`load_all`: changes published during the first
        load are queued and applied after it."""
        self._stop.clear()
        for target, name in ((self._listen, "radius-snapshot-listen"), (self._reload_loop, "radius-snapshot-load")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop_sync(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=3)
        self._threads.clear()

    def _listen(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                client = _redis()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                invalidate_channel, usage_channel = channel("invalidate"), channel("usage")
                pubsub.subscribe(invalidate_channel, usage_channel)
                backoff = 0.5
                if not first:
                    # anything may have changed while we were not listening
                    self._queue.put(("all", None))
                first = False
                self.subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    data = json.loads(message["data"])
                    if message["channel"].decode() == usage_channel:
                        if data.get("from") != PROCESS_TAG:
                            self._queue.put(("usage", data["customers"]))
                    elif data.get("customers"):
                        self._queue.put(("customers", data["customers"]))
                    elif data.get("packages"):
                        self._queue.put(("packages", data["packages"]))
                    elif data.get("nas"):
                        self._queue.put(("nas", data["tenant"]))
                    else:
                        self._queue.put(("tenant", data["tenant"]))
                pubsub.close()
            except Exception:
                logger.warning("RADIUS snapshot listener lost Redis; retrying in %.1fs", backoff, exc_info=True)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)

    def _reload_loop(self) -> None:
        try:
            self._reload_forever()
        finally:
            connection.close()

    def _reload_forever(self) -> None:
        refresh = getattr(settings, "RADIUS_SNAPSHOT_REFRESH", 300)
        pending: list = []
        while not self._stop.is_set():
            if not pending:
                try:
                    item = self._queue.get(timeout=refresh)
                except queue.Empty:
                    item = ("all", None)
                if item is None:
                    return
                pending.append(item)
            # coalesce what arrived meanwhile
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return
                pending.append(item)
            try:
                close_old_connections()
                self._apply(pending)
                pending = []
            except Exception:
                logger.warning("RADIUS snapshot reload failed; serving the last snapshot", exc_info=True)
                self._stop.wait(1.0)

    def _apply(self, items: list) -> None:
        if any(kind == "all" for kind, _ in items):
            self.load_all()
            return
        tenants = {data for kind, data in items if kind == "tenant"}
        for tenant_id in tenants:
            self.reload_tenant(tenant_id)
        for tenant_id in {data for kind, data in items if kind == "nas"} - tenants:
            self.reload_nases(tenant_id)
        packages = {pid for kind, data in items if kind == "packages" for pid in data}
        if packages:
            self.reload_packages(sorted(packages))
        customers = {cid for kind, data in items if kind == "customers" for cid in data}
        if customers:
            self.reload_customers(sorted(customers))
        usage = {cid for kind, data in items if kind == "usage" for cid in data} - customers
        usage = {cid for cid in usage if cid in self.by_id and self.by_id[cid].tenant_id not in tenants}
        if usage:
            self.refresh_usage(sorted(usage))


def now_ts() -> float:
    return timezone.now().timestamp()
