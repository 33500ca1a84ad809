"""Reads spanning IPAM and the rest of the system: free-space search, the check of
one candidate address, utilisation, the conflict report, the RADIUS reply hook and
CSV export. Nothing here writes."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from django.db import connection
from django.db.models import BooleanField, F, Func, Value
from netaddr import IPAddress, IPNetwork, iprange_to_cidrs

from ispcore.subscribers.models import Customer, Nas

from .models import KIND_ROLE, Assignment, Prefix, Reservation

# -- geometry ---------------------------------------------------------------------


def max_bits(version: int) -> int:
    return 32 if version == 4 else 128


def unit_of(pool: Prefix) -> int:
    """Prefix length of one unit of `pool` (addresses for dynamic pools)."""
    return pool.unit_prefixlen or max_bits(pool.family)


def pool_bounds(pool: Prefix) -> tuple[int, int]:
    """First and last integer address a unit may start/end at: an IPv4 subnet of /30 or
    bigger loses its network and broadcast addresses, an IPv6 address pool its
    subnet-router anycast address (RFC 4291)."""
    net = pool.network
    start, end = net.first, net.last
    if net.version == 4 and net.prefixlen <= 30:
        start, end = start + 1, end - 1
    elif net.version == 6 and unit_of(pool) == 128 and net.prefixlen <= 126:
        start += 1
    return start, end


def _aligned(first: int, last: int, unit: int, version: int) -> tuple[int, int]:
    """Widen [first, last] to whole units of /unit."""
    size = 1 << (max_bits(version) - unit)
    return first - first % size, last - last % size + size - 1


def first_free_between(ranges: Iterable[tuple[int, int]], start: int, end: int) -> int | None:
    """The lowest integer in [start, end] that no (lo, hi) range covers, or None."""
    candidate = start
    for lo, hi in sorted(ranges):
        if hi < candidate:
            continue
        if lo > candidate:
            break
        candidate = hi + 1
        if candidate > end:
            return None
    return candidate if candidate <= end else None


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _covered(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(hi - lo + 1 for lo, hi in _merged(ranges))


# -- what occupies space ------------------------------------------------------------


class AddressWithin(Func):
    """`address <<= network` for GenericIPAddressField columns of other apps
    (PostgreSQL operator; the registered Python function on SQLite)."""

    output_field = BooleanField()
    arity = 2

    def as_sql(self, compiler, connection, **extra):
        address, address_params = compiler.compile(self.source_expressions[0])
        net, net_params = compiler.compile(self.source_expressions[1])
        params = (*address_params, *net_params)
        if connection.vendor == "postgresql":
            return f"({address} <<= ({net})::inet)", params
        return f"(ipam_net_within({address}, {net}) = 1)", params


@dataclass(frozen=True)
class Occupant:
    """Something that takes space a pool cannot hand out: an assignment, a reservation,
    a more specific prefix, a dynamic pool, a router's address, a customer's
    unmanaged static IP."""

    network: IPNetwork
    kind: str
    message: str
    assignment_id: int | None = None


def occupants(pool: Prefix, target: IPNetwork | None = None, *, exclude_customer_id: int | None = None) -> list[Occupant]:
    """Everything inside `pool` (or, with `target`, overlapping `target`) that an
    allocation from `pool` must avoid. A customer's own unmanaged static IP is not an
    obstacle to giving that customer that address (`exclude_customer_id`)."""
    area = target if target is not None else pool.network
    tenant_id = pool.tenant_id
    found: list[Occupant] = []
    for a in Assignment.objects.filter(tenant_id=tenant_id).overlapping(area).select_related("customer", "nas"):
        holder = f"customer {a.customer.username}" if a.customer_id else f"NAS {a.nas.name} {a.interface}".rstrip()
        found.append(Occupant(a.network, "assignment", f"{a.network} is already assigned to {holder}.", a.id))
    for r in Reservation.objects.filter(tenant_id=tenant_id).overlapping(area):
        found.append(Occupant(r.network, "reservation", f"{r.network} is reserved ({r.get_kind_display()})."))
    for p in Prefix.objects.filter(tenant_id=tenant_id, network__net_inside=pool.network).overlapping(area):
        found.append(Occupant(p.network, "subprefix", f"{p.network} is a more specific prefix ({p.get_role_display()})."))
    if pool.role == Prefix.Role.CUSTOMER_STATIC:
        dynamic = Prefix.objects.filter(tenant_id=tenant_id, role=Prefix.Role.CUSTOMER_DYNAMIC).overlapping(area)
        for p in dynamic.exclude(pk=pool.pk).select_related("nas"):
            where = f" of NAS {p.nas.name}" if p.nas_id else ""
            found.append(Occupant(p.network, "dynamic", f"{p.network} is a dynamic pool{where}."))
    for name, ip in Nas.objects.filter(tenant_id=tenant_id).filter(
        AddressWithin(F("ip_address"), Value(str(area)))
    ).values_list("name", "ip_address"):
        found.append(Occupant(IPNetwork(ip), "nas", f"{ip} is the address of NAS {name}."))
    # Customers' static_ip values mirror their assignments; one that does not (set
    # before IPAM managed it, or imported) still holds its address on the router.
    assigned = {o.network for o in found if o.kind == "assignment"}
    legacy = Customer.objects.filter(tenant_id=tenant_id, static_ip__isnull=False).filter(
        AddressWithin(F("static_ip"), Value(str(area)))
    )
    if exclude_customer_id is not None:
        legacy = legacy.exclude(pk=exclude_customer_id)
    for username, ip in legacy.values_list("username", "static_ip"):
        if IPNetwork(ip) not in assigned:
            found.append(Occupant(IPNetwork(ip), "static_ip", f"{ip} is the static IP of customer {username}."))
    return found


def candidate_problems(pool: Prefix, net: IPNetwork, *, exclude_customer_id: int | None = None) -> list[str]:
    """Why `net` cannot be handed out of `pool` (empty list: it can)."""
    unit = pool.unit_prefixlen
    if unit is None:
        return [f"{pool.network} is a dynamic pool; the router hands out its addresses."]
    if net.version != pool.network.version or not (pool.network.first <= net.first and net.last <= pool.network.last):
        return [f"{net} is not inside pool {pool.network}."]
    problems = []
    if pool.role != Prefix.Role.INFRASTRUCTURE and net.prefixlen != unit:
        problems.append(f"Pool {pool.network} hands out /{unit} blocks, not /{net.prefixlen}.")
    elif pool.role == Prefix.Role.INFRASTRUCTURE and net.prefixlen < pool.network.prefixlen:
        problems.append(f"{net} is bigger than pool {pool.network}.")
    start, end = pool_bounds(pool)
    if net.first < start or net.last > end:
        if pool.network.version == 4:
            problems.append(f"{net} covers the network or broadcast address of {pool.network}.")
        else:
            problems.append(f"{net} is the subnet-router anycast address of {pool.network}.")
    problems.extend(o.message for o in occupants(pool, net, exclude_customer_id=exclude_customer_id))
    return problems


# -- free-space search ----------------------------------------------------------------

_FIRST_FREE_SQL = """
WITH used(net) AS (
    SELECT network FROM ipam_assignment WHERE tenant_id = %(tenant)s AND network && %(pool)s::cidr
    UNION ALL
    SELECT network FROM ipam_reservation WHERE tenant_id = %(tenant)s AND network && %(pool)s::cidr
    UNION ALL
    SELECT network FROM ipam_prefix WHERE tenant_id = %(tenant)s AND id <> %(pool_id)s AND (
        network << %(pool)s::cidr OR (%(static)s AND role = 'customer_dynamic' AND network && %(pool)s::cidr))
    UNION ALL
    SELECT host(ip_address)::cidr FROM subscribers_nas WHERE tenant_id = %(tenant)s AND ip_address <<= %(pool)s::cidr
    UNION ALL
    SELECT host(static_ip)::cidr FROM subscribers_customer
     WHERE tenant_id = %(tenant)s AND static_ip <<= %(pool)s::cidr AND id <> %(customer)s
), blocks AS (
    SELECT host(network(b))::inet AS lo, host(broadcast(b))::inet AS hi
      FROM (SELECT CASE WHEN masklen(net) > %(unit)s THEN set_masklen(net, %(unit)s) ELSE net END AS b FROM used) s
), ordered AS (
    SELECT lo,
           max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS reach,
           lead(lo) OVER (ORDER BY lo, hi) AS next_lo
      FROM blocks WHERE hi >= %(start)s::inet AND lo <= %(end)s::inet
)
SELECT host(candidate) FROM (
    SELECT %(start)s::inet AS candidate WHERE NOT EXISTS (SELECT 1 FROM ordered WHERE lo <= %(start)s::inet)
    UNION ALL
    SELECT reach + 1 FROM ordered WHERE reach < %(end)s::inet AND (next_lo IS NULL OR next_lo > reach + 1)
) c ORDER BY candidate LIMIT 1
"""


def first_free(pool: Prefix, *, customer_id: int | None = None) -> IPNetwork | None:
    """The lowest free unit of `pool` (an IPv4 /32, an IPv6 /64, /56 or /60), or None
    when the pool is full. On PostgreSQL one query finds the first gap (a window over
    the occupied blocks); elsewhere the same walk runs in Python. Call it under the
    pool's row lock; the constraints still have the last word."""
    unit = pool.unit_prefixlen
    if unit is None:
        return None
    start, end = pool_bounds(pool)
    if start > end:
        return None
    version = pool.network.version
    if connection.vendor == "postgresql":
        params = {
            "tenant": pool.tenant_id, "pool": str(pool.network), "pool_id": pool.pk,
            "static": pool.role == Prefix.Role.CUSTOMER_STATIC, "unit": unit,
            "start": str(IPAddress(start, version)), "end": str(IPAddress(end, version)),
            "customer": customer_id or 0,
        }
        with connection.cursor() as cursor:
            cursor.execute(_FIRST_FREE_SQL, params)
            row = cursor.fetchone()
        return IPNetwork(f"{row[0]}/{unit}") if row else None
    return first_free_python(pool, customer_id=customer_id)


def first_free_python(pool: Prefix, *, customer_id: int | None = None) -> IPNetwork | None:
    """The same answer as `first_free`, computed in Python (SQLite; and the oracle the
    tests compare the SQL with)."""
    unit = pool.unit_prefixlen
    if unit is None:
        return None
    start, end = pool_bounds(pool)
    version = pool.network.version
    ranges = [_aligned(o.network.first, o.network.last, unit, version)
              for o in occupants(pool, exclude_customer_id=customer_id)]
    found = first_free_between(ranges, start, end)
    return None if found is None else IPNetwork(f"{IPAddress(found, version)}/{unit}")


# -- utilisation ----------------------------------------------------------------------


@dataclass
class Utilisation:
    """How full a prefix is, counted in its units (addresses, /64s, /56s or /60s).

    total: units in the prefix; assigned: handed out; in_subprefixes: carved out by
    more specific prefixes (and dynamic pools); reserved: everything else not
    available (reservations, network/broadcast, routers' and unmanaged static
    addresses); free = total - assigned - in_subprefixes - reserved.
    used_percent = assigned / (assigned + free) (0 when nothing can be handed out)."""

    prefix_id: int
    network: str
    role: str
    unit_prefixlen: int
    total: int
    assigned: int
    reserved: int
    in_subprefixes: int
    free: int
    used_percent: float
    largest_free_block: str | None
    largest_free_units: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def utilisation(pool: Prefix) -> Utilisation:
    """Used, free, percentage and the largest free aligned block of one prefix."""
    unit = unit_of(pool)
    version = pool.network.version
    size = 1 << (max_bits(version) - unit)
    net = pool.network
    start, end = pool_bounds(pool)
    if pool.role == Prefix.Role.CUSTOMER_DYNAMIC:
        start, end = net.first, net.last  # the router's business; nothing is ours to count
    found = occupants(pool)

    def clip(items) -> list[tuple[int, int]]:
        out = []
        for o in items:
            lo, hi = _aligned(o.network.first, o.network.last, unit, version)
            lo, hi = max(lo, net.first), min(hi, net.last)
            if lo <= hi:
                out.append((lo, hi))
        return out

    assigned_r = clip(o for o in found if o.kind == "assignment")
    sub_r = clip(o for o in found if o.kind in ("subprefix", "dynamic"))
    all_r = clip(found)
    if start > net.first:
        all_r.append((net.first, start - 1))
    if end < net.last:
        all_r.append((end + 1, net.last))
    total = net.size // size
    assigned = _covered(assigned_r) // size
    in_sub = _covered(sub_r + assigned_r) // size - assigned
    covered = _covered(all_r) // size
    free = total - covered
    reserved = covered - assigned - in_sub
    best, best_units = None, 0
    for lo, hi in _gaps(_merged(all_r), net.first, net.last):
        for cidr in iprange_to_cidrs(IPAddress(lo, version), IPAddress(hi, version)):
            if cidr.prefixlen <= unit and cidr.size // size > best_units:
                best, best_units = cidr, cidr.size // size
    pct = round(100.0 * assigned / (assigned + free), 2) if assigned + free else 0.0
    return Utilisation(
        prefix_id=pool.pk, network=str(net), role=pool.role, unit_prefixlen=unit, total=total, assigned=assigned,
        reserved=reserved, in_subprefixes=in_sub, free=free, used_percent=pct,
        largest_free_block=str(best) if best is not None else None, largest_free_units=best_units,
    )


def _gaps(merged: list[tuple[int, int]], first: int, last: int) -> Iterator[tuple[int, int]]:
    cursor = first
    for lo, hi in merged:
        if lo > cursor:
            yield cursor, lo - 1
        cursor = max(cursor, hi + 1)
    if cursor <= last:
        yield cursor, last


# -- conflict report --------------------------------------------------------------------


@dataclass
class Conflict:
    """One problem in stored data: `code` says what, `objects` which rows."""

    code: str
    tenant_id: int
    message: str
    objects: list[dict] = field(default_factory=list)
    severity: str = "error"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Item:
    kind: str  # prefix | assignment | reservation | nas | static_ip
    id: int
    network: IPNetwork
    data: dict

    def ref(self) -> dict:
        return {"type": self.kind, "id": self.id, "network": str(self.network), **self.data}


def _overlapping_pairs(items: list[_Item]) -> Iterator[tuple[_Item, _Item]]:
    """Every pair of overlapping items. CIDR blocks either nest or are disjoint, so a
    sweep in (first, -last) order keeps a chain of open blocks, each containing the
    next, and every block in the chain overlaps the one being visited."""
    items = sorted(items, key=lambda i: (i.network.version, i.network.first, -i.network.last))
    chain: list[_Item] = []
    for item in items:
        while chain and (chain[-1].network.version != item.network.version or chain[-1].network.last < item.network.first):
            chain.pop()
        for outer in chain:
            yield outer, item
        chain.append(item)


def conflict_report(tenant_id: int | None = None) -> list[Conflict]:
    """Scan stored prefixes, assignments, reservations, routers' addresses and
    customers' static IPs (e.g. after an import) and list every overlap, duplicate
    and rule violation. Works on data that never went through the services."""
    tenants = [tenant_id] if tenant_id is not None else sorted(
        set(Prefix.objects.values_list("tenant_id", flat=True))
        | set(Assignment.objects.values_list("tenant_id", flat=True))
        | set(Customer.objects.filter(static_ip__isnull=False).values_list("tenant_id", flat=True))
    )
    report: list[Conflict] = []
    for tid in tenants:
        report.extend(_tenant_conflicts(tid))
    return report


def _tenant_conflicts(tid: int) -> list[Conflict]:
    out: list[Conflict] = []

    def add(code: str, message: str, *items: _Item, severity: str = "error") -> None:
        out.append(Conflict(code, tid, message, [i.ref() for i in items], severity))

    prefixes = {
        pid: _Item("prefix", pid, net, {"role": role, "parent": parent, "delegated_prefixlen": dlen})
        for pid, net, role, parent, dlen in Prefix.objects.filter(tenant_id=tid)
        .values_list("id", "network", "role", "parent_id", "delegated_prefixlen")
    }
    assignments = [
        _Item("assignment", aid, net, {"kind": kind, "prefix": pid, "customer": cid, "nas": nid})
        for aid, net, kind, pid, cid, nid in Assignment.objects.filter(tenant_id=tid)
        .values_list("id", "network", "kind", "prefix_id", "customer_id", "nas_id")
    ]
    reservations = [
        _Item("reservation", rid, net, {"kind": kind})
        for rid, net, kind in Reservation.objects.filter(tenant_id=tid).values_list("id", "network", "kind")
    ]
    nases = [
        _Item("nas", nid, IPNetwork(ip), {"name": name})
        for nid, ip, name in Nas.objects.filter(tenant_id=tid).values_list("id", "ip_address", "name")
    ]
    statics = [
        _Item("static_ip", cid, IPNetwork(ip), {"customer": username, "customer_type": ctype})
        for cid, ip, username, ctype in Customer.objects.filter(tenant_id=tid, static_ip__isnull=False)
        .values_list("id", "static_ip", "username", "customer_type")
    ]

    def ancestors(pid: int | None) -> Iterator[int]:
        seen = set()
        while pid is not None and pid in prefixes and pid not in seen:
            seen.add(pid)
            yield pid
            pid = prefixes[pid].data["parent"]

    # Rows on their own.
    for p in prefixes.values():
        parent = prefixes.get(p.data["parent"])
        if parent is not None:
            pn = parent.network
            if pn.version != p.network.version or not (pn.first <= p.network.first and p.network.last <= pn.last) \
                    or pn.prefixlen >= p.network.prefixlen:
                add("prefix_outside_parent", f"Prefix {p.network} does not lie inside its parent {pn}.", p, parent)
            if parent.data["role"] == Prefix.Role.CUSTOMER_DYNAMIC:
                add("prefix_under_dynamic", f"Dynamic pool {pn} contains prefix {p.network}.", parent, p)
    managed_static = {}
    for a in assignments:
        pool = prefixes.get(a.data["prefix"])
        if pool is None:
            continue
        if a.data["kind"] == Assignment.Kind.IPV4_STATIC and a.data["customer"]:
            managed_static[a.data["customer"]] = a
        fake = Prefix(network=pool.network, role=pool.data["role"], family=pool.network.version,
                      delegated_prefixlen=pool.data["delegated_prefixlen"])
        pn, net = pool.network, a.network
        if net.version != pn.version or not (pn.first <= net.first and net.last <= pn.last):
            add("assignment_outside_pool", f"{net} lies outside its pool {pn}.", a, pool)
            continue
        if KIND_ROLE.get(a.data["kind"]) != pool.data["role"]:
            add("assignment_wrong_pool", f"A {a.data['kind']} assignment {net} comes from a {pool.data['role']} prefix.",
                a, pool)
        unit = fake.unit_prefixlen
        if unit and pool.data["role"] != Prefix.Role.INFRASTRUCTURE and net.prefixlen != unit:
            add("assignment_wrong_size", f"{net} should be a /{unit} from pool {pn}.", a, pool)
        start, end = pool_bounds(fake)
        if net.first < start or net.last > end:
            add("assignment_network_or_broadcast", f"{net} is the network, broadcast or anycast address of {pn}.",
                a, pool)
    for s in statics:
        a = managed_static.get(s.id)
        if a is None:
            add("static_ip_unmanaged", f"Customer {s.data['customer']}'s static IP {s.network.ip} is not assigned in IPAM.",
                s, severity="warning")
        elif a.network != s.network:
            add("static_ip_mismatch", f"Customer {s.data['customer']}'s static IP {s.network.ip} differs from "
                f"its assignment {a.network}.", s, a)

    # Pairs that overlap.
    for x, y in _overlapping_pairs([*prefixes.values(), *assignments, *reservations, *nases, *statics]):
        kinds = {x.kind, y.kind}
        same = x.network == y.network
        if kinds == {"prefix"}:
            inner, outer = (y, x) if x.network.size >= y.network.size else (x, y)
            if same:
                add("prefix_duplicate", f"Prefix {x.network} exists twice.", x, y)
            elif outer.id not in ancestors(inner.data["parent"]):
                add("prefix_overlap", f"Prefix {inner.network} overlaps {outer.network}, which is not its parent "
                    "(or an ancestor).", outer, inner)
        elif kinds == {"assignment"}:
            add("assignment_duplicate" if same else "assignment_overlap",
                f"{x.network} and {y.network} are both assigned.", x, y)
        elif kinds == {"reservation"}:
            add("reservation_duplicate" if same else "reservation_overlap",
                f"Reservations {x.network} and {y.network} overlap.", x, y)
        elif kinds == {"static_ip"}:
            add("static_ip_duplicate", f"Customers {x.data['customer']} and {y.data['customer']} have the same static "
                f"IP {x.network.ip}.", x, y)
        elif kinds == {"assignment", "reservation"}:
            a, r = (x, y) if x.kind == "assignment" else (y, x)
            add("assignment_reserved", f"{a.network} is assigned but reserved ({r.data['kind']}).", a, r)
        elif kinds == {"assignment", "prefix"}:
            a, p = (x, y) if x.kind == "assignment" else (y, x)
            lineage = set(ancestors(a.data["prefix"]))
            if p.id in lineage:
                continue
            if a.data["kind"] == Assignment.Kind.IPV4_STATIC and p.data["role"] == Prefix.Role.CUSTOMER_DYNAMIC:
                add("static_in_dynamic_pool", f"Static IP {a.network.ip} lies inside dynamic pool {p.network}.", a, p)
            elif a.data["prefix"] in set(ancestors(p.data["parent"])):
                add("assignment_in_subprefix", f"{a.network} lies in {p.network}, a more specific prefix than its "
                    "pool.", a, p)
        elif kinds == {"assignment", "nas"}:
            a, n = (x, y) if x.kind == "assignment" else (y, x)
            if not (a.data["kind"] == Assignment.Kind.INTERFACE and a.data["nas"] == n.id):
                add("assignment_router_address", f"{a.network} includes the address of NAS {n.data['name']}.", a, n)
        elif kinds == {"assignment", "static_ip"}:
            a, s = (x, y) if x.kind == "assignment" else (y, x)
            if not (a.data["kind"] == Assignment.Kind.IPV4_STATIC and a.data["customer"] == s.id):
                add("static_ip_assigned_elsewhere", f"Customer {s.data['customer']}'s static IP {s.network.ip} is "
                    f"assigned to someone else ({a.network}).", s, a)
        elif kinds == {"static_ip", "prefix"}:
            s, p = (x, y) if x.kind == "static_ip" else (y, x)
            if p.data["role"] == Prefix.Role.CUSTOMER_DYNAMIC:
                add("static_in_dynamic_pool", f"Customer {s.data['customer']}'s static IP {s.network.ip} lies inside "
                    f"dynamic pool {p.network}.", s, p)
        elif kinds == {"static_ip", "reservation"}:
            s, r = (x, y) if x.kind == "static_ip" else (y, x)
            add("static_ip_reserved", f"Customer {s.data['customer']}'s static IP {s.network.ip} is reserved "
                f"({r.data['kind']}).", s, r)
        elif kinds == {"static_ip", "nas"}:
            s, n = (x, y) if x.kind == "static_ip" else (y, x)
            add("static_ip_router_address", f"Customer {s.data['customer']}'s static IP {s.network.ip} is the address "
                f"of NAS {n.data['name']}.", s, n)
    return out


# -- RADIUS hooks -------------------------------------------------------------------------

REPLY_KEYS = {
    Assignment.Kind.IPV4_STATIC: "framed_ip",
    Assignment.Kind.IPV6_LINK: "framed_ipv6_prefix",
    Assignment.Kind.IPV6_DELEGATED: "delegated_ipv6_prefix",
}
REPLY_ATTRIBUTES = {
    "framed_ip": "Framed-IP-Address",
    "framed_ipv6_prefix": "Framed-IPv6-Prefix",
    "delegated_ipv6_prefix": "Delegated-IPv6-Prefix",
}


def reply_addresses(customer_ids: Iterable[int]) -> dict[int, dict[str, str | None]]:
    """{customer_id: {framed_ip, framed_ipv6_prefix, delegated_ipv6_prefix}} for every
    id given (None where nothing is assigned), in one query per 5000 ids. Values are
    text: '10.0.0.5', '2001:db8:0:1::/64', '2001:db8:100::/56'."""
    ids = list(dict.fromkeys(customer_ids))
    result: dict[int, dict[str, str | None]] = {cid: dict.fromkeys(REPLY_KEYS.values()) for cid in ids}
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        rows = Assignment.objects.filter(customer_id__in=chunk, kind__in=list(REPLY_KEYS)).values_list(
            "customer_id", "kind", "network"
        )
        for cid, kind, net in rows:
            result[cid][REPLY_KEYS[kind]] = str(net.ip) if kind == Assignment.Kind.IPV4_STATIC else str(net)
    return result


def reply_attributes(customer_ids: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    """The same as `reply_addresses` as RADIUS (dictionary name, value) pairs, only for
    customers that have something: {id: [("Framed-IP-Address", "10.0.0.5"), ...]}."""
    out: dict[int, list[tuple[str, str]]] = {}
    for cid, values in reply_addresses(customer_ids).items():
        pairs = [(REPLY_ATTRIBUTES[k], v) for k, v in values.items() if v]
        if pairs:
            out[cid] = pairs
    return out


# -- CSV export ------------------------------------------------------------------------------

PREFIX_COLUMNS = ["network", "role", "parent", "nas", "delegated_prefixlen", "name", "description"]
ASSIGNMENT_COLUMNS = ["network", "kind", "customer", "nas", "interface", "description", "prefix", "since"]


def export_prefixes_csv(queryset) -> str:
    """Prefixes as CSV (the import format: parent by network, NAS by IP address)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PREFIX_COLUMNS)
    for p in queryset.select_related("parent", "nas").order_by("family", "network"):
        writer.writerow([
            str(p.network), p.role, str(p.parent.network) if p.parent_id else "", p.nas.ip_address if p.nas_id else "",
            p.delegated_prefixlen or "", p.name, p.description,
        ])
    return buf.getvalue()


def export_assignments_csv(queryset) -> str:
    """Assignments as CSV (customer by username, NAS by IP address); `prefix` and
    `since` are informative and ignored on import."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(ASSIGNMENT_COLUMNS)
    for a in queryset.select_related("customer", "nas", "prefix").order_by("network"):
        writer.writerow([
            str(a.network), a.kind, a.customer.username if a.customer_id else "",
            a.nas.ip_address if a.nas_id else "", a.interface, a.description, str(a.prefix.network),
            a.since.isoformat(),
        ])
    return buf.getvalue()
