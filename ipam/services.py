"""Writes for IPAM: prefixes, reservations, assignments, CSV imports.

Every function takes the acting user, runs in one transaction, records an audit
event, and is the only way these rows change. Allocation locks the customer row
and then the pool rows (`locks.py`, always in that order, pools by id), finds the
free unit in SQL (`selectors.first_free`), and the unique/exclusion constraints
have the last word: a violation surfaces as a ValidationError, never as a
duplicate address.

After every change of a customer's addresses the RADIUS snapshot is told, on
commit, through `_notify_radius` (batched per transaction).

Integration points for other apps (they call these inside their own transaction):

* `sync_customer(customer, actor=)` after a customer is created or changed: releases
  what the customer type may no longer hold, and makes the managed static IPv4
  follow `Customer.static_ip` (assigning, replacing or releasing it);
* deleting a customer (or NAS) releases its assignments by CASCADE; call
  `release_customer` first if RADIUS must hear of it at once.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Value
from django.utils import timezone
from netaddr import AddrFormatError, IPAddress, IPNetwork

from ispcore.core import audit
from ispcore.subscribers.models import Customer, Nas

from . import selectors
from .fields import to_network
from .locks import assert_pool_locked, lock_customer, lock_pools
from .models import DELEGATION_SIZES, KIND_ROLE, Assignment, Prefix, Reservation

logger = logging.getLogger(__name__)

CT = Customer.CustomerType
# Which customer types may hold which kind of assignment (spec 8: static IPs for PPPoE
# and static-IP customers, IPv6 prefixes for PPPoE customers).
ELIGIBLE_TYPES: dict[str, frozenset[str]] = {
    Assignment.Kind.IPV4_STATIC: frozenset({CT.PPPOE, CT.STATIC}),
    Assignment.Kind.IPV6_LINK: frozenset({CT.PPPOE}),
    Assignment.Kind.IPV6_DELEGATED: frozenset({CT.PPPOE}),
}

# How messages name each kind of prefix.
ROLE_NOUN: dict[str, str] = {
    Prefix.Role.CUSTOMER_STATIC: "static-IP pool",
    Prefix.Role.CUSTOMER_DYNAMIC: "dynamic pool",
    Prefix.Role.IPV6_LINK: "IPv6 link pool",
    Prefix.Role.IPV6_DELEGATED: "IPv6 delegated-prefix pool",
    Prefix.Role.INFRASTRUCTURE: "infrastructure prefix",
}



def _a(noun: str) -> str:
    return f"{'an' if noun[0].lower() in 'aeiou' else 'a'} {noun}"


_CONSTRAINT_MESSAGES = {
    "ipam_assignment_no_overlap": "This address or prefix overlaps one assigned meanwhile; try again.",
    "ipam_assignment_unique_network": "This address or prefix was assigned meanwhile; try again.",
    "ipam_assignment_one_per_kind": "The customer already has an assignment of this kind.",
    "ipam_prefix_no_sibling_overlap": "This prefix overlaps another prefix under the same parent.",
    "ipam_prefix_unique_network": "This prefix already exists.",
    "ipam_reservation_no_overlap": "This reservation overlaps another reservation.",
    "ipam_reservation_unique_network": "This address is already reserved.",
}


@contextmanager
def _constraint_guard(field_name: str) -> Iterator[None]:
    """Turn a database constraint or trigger refusal into a ValidationError on `field_name`."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        name = getattr(diag, "constraint_name", None)
        detail = _CONSTRAINT_MESSAGES.get(name) or getattr(diag, "message_primary", None) or str(exc.__cause__ or exc)
        raise ValidationError({field_name: [detail]}) from None


# -- RADIUS notification ------------------------------------------------------------------


class _PendingNotifications:
    """Tenants (and, when known, customers) whose RADIUS replies changed in the current
    transaction; published once, on commit. Over-notifying is harmless (a reload),
    under-notifying is not, so entries added in a rolled-back savepoint may stay."""

    def __init__(self) -> None:
        self.tenants: dict[int, set[int] | None] = {}
        self.sent = False
        self.__qualname__ = "ipam.services._notify_radius"  # named in Django's log if publishing fails

    def add(self, tenant_id: int, customer_ids: Iterable[int]) -> None:
        ids = set(customer_ids)
        if not ids:
            self.tenants[tenant_id] = None
        elif tenant_id not in self.tenants:
            self.tenants[tenant_id] = ids
        elif self.tenants[tenant_id] is not None:
            self.tenants[tenant_id] |= ids

    def __call__(self) -> None:
        self.sent = True
        tenants, self.tenants = self.tenants, {}
        for tenant_id, ids in tenants.items():
            _publish(tenant_id, sorted(ids) if ids else None)


def _publish(tenant_id: int, customer_ids: list[int] | None) -> None:
    try:
        from radius.snapshot import publish_invalidation
    except ImportError:
        return  # no RADIUS snapshot in this deployment: nothing to tell
    if customer_ids:
        publish_invalidation(tenant_id, customer_ids)
    else:
        publish_invalidation(tenant_id)


def _notify_radius(tenant_id: int, customer_ids: Iterable[int] = ()) -> None:
    """After commit, tell the RADIUS snapshot that these customers' (or, with no ids,
    the whole tenant's) reply addresses changed, via `radius.snapshot.publish_invalidation`
    imported lazily; if that module does not exist, do nothing. Nothing is sent if the
    transaction rolls back; a failure to publish is logged, never raised (the snapshot's
    periodic refresh catches up)."""
    if not connection.in_atomic_block:
        try:
            _publish(tenant_id, sorted(set(customer_ids)) or None)
        except Exception:
            logger.warning("could not notify RADIUS of an address change in tenant %s", tenant_id, exc_info=True)
        return
    pending = getattr(connection, "_ipam_radius_pending", None)
    if pending is None or pending.sent or not any(entry[1] is pending for entry in connection.run_on_commit):
        pending = _PendingNotifications()
        connection._ipam_radius_pending = pending
        transaction.on_commit(pending, robust=True)
    pending.add(tenant_id, customer_ids)


# -- prefixes -----------------------------------------------------------------------------


def _check_nas(nas: Nas | None, tenant_id: int) -> None:
    if nas is not None and nas.tenant_id != tenant_id:
        raise ValidationError({"nas": ["The NAS belongs to another tenant."]})


@transaction.atomic
def create_prefix(*, actor, tenant, network, role: str, parent: Prefix | None = None, nas: Nas | None = None,
                  delegated_prefixlen: int | None = None, name: str = "", description: str = "",
                  gateway=None) -> Prefix:
    """Create a prefix. Guarantees: it does not overlap any prefix of the tenant except
    its ancestors (a prefix inside another must name it, or its most specific
    container, as `parent`); it lies strictly inside its parent; it covers no existing
    assignment; the role fits the family and (delegated pools) the delegation size
    fits; a dynamic pool contains no customer's static IP and never gets children.
    `gateway`, if given, is reserved in the same transaction."""
    errors: dict[str, list[str]] = {}
    try:
        net = to_network(network)
    except ValidationError as exc:
        raise ValidationError({"network": exc.messages}) from None
    if role not in Prefix.Role.values:
        raise ValidationError({"role": [f"Unknown role {role!r}."]})
    if role in (Prefix.Role.CUSTOMER_STATIC, Prefix.Role.CUSTOMER_DYNAMIC) and net.version != 4:
        errors["role"] = ["Customer static and dynamic pools are IPv4."]
    if role in (Prefix.Role.IPV6_LINK, Prefix.Role.IPV6_DELEGATED) and net.version != 6:
        errors["role"] = ["IPv6 link and delegated pools are IPv6."]
    if role == Prefix.Role.IPV6_DELEGATED:
        delegated_prefixlen = int(delegated_prefixlen or 56)
        if delegated_prefixlen not in DELEGATION_SIZES:
            errors["delegated_prefixlen"] = [f"Delegate /{' or /'.join(map(str, DELEGATION_SIZES))} prefixes."]
        elif net.prefixlen > delegated_prefixlen:
            errors["network"] = [f"A /{net.prefixlen} pool cannot hand out /{delegated_prefixlen} prefixes."]
    elif delegated_prefixlen:
        errors["delegated_prefixlen"] = ["Only delegated pools have a delegation size."]
    else:
        delegated_prefixlen = None
    if role == Prefix.Role.IPV6_LINK and net.prefixlen > 64:
        errors["network"] = ["A link pool hands out /64s; it must be a /64 or bigger."]
    if nas is not None and nas.tenant_id != tenant.id:
        errors["nas"] = ["The NAS belongs to another tenant."]
    if parent is not None and parent.tenant_id != tenant.id:
        errors["parent"] = ["The parent prefix belongs to another tenant."]
    if errors:
        raise ValidationError(errors)

    if parent is not None:
        parent = lock_pools([parent.pk])[parent.pk]
        pn = parent.network
        if pn.version != net.version or not (pn.first <= net.first and net.last <= pn.last) or pn.prefixlen >= net.prefixlen:
            raise ValidationError({"parent": [f"{net} does not lie strictly inside {pn}."]})
        if parent.role == Prefix.Role.CUSTOMER_DYNAMIC:
            raise ValidationError({"parent": [f"{pn} is a dynamic pool; it cannot contain other prefixes."]})
    siblings = Prefix.objects.filter(tenant=tenant, parent=parent).overlapping(net)
    for other in siblings:
        if other.network == net:
            raise ValidationError({"network": [f"{net} already exists."]})
        if other.network.prefixlen < net.prefixlen:
            raise ValidationError({"parent": [f"{net} lies inside {other.network}; create it with that prefix "
                                              "(or a more specific one inside it) as parent."]})
        raise ValidationError({"network": [f"{net} would contain the existing prefix {other.network}; "
                                           "prefixes do not overlap unless one is the other's parent."]})
    taken = list(Assignment.objects.filter(tenant=tenant).overlapping(net).values_list("network", flat=True)[:5])
    if taken:
        raise ValidationError({"network": [f"{net} covers addresses already assigned from another pool: "
                                           + ", ".join(map(str, taken)) + "."]})
    if role == Prefix.Role.CUSTOMER_DYNAMIC:
        clash = [
            f"{username} ({ip})" for username, ip in Customer.objects.filter(tenant=tenant, static_ip__isnull=False)
            .filter(selectors.AddressWithin(F("static_ip"), Value(str(net))))
            .values_list("username", "static_ip")[:5]
        ]
        if clash:
            raise ValidationError({"network": ["A dynamic pool cannot hold customers' static IPs: "
                                               + ", ".join(clash) + "."]})
    prefix = Prefix(tenant=tenant, network=net, family=net.version, role=role, parent=parent, nas=nas,
                    delegated_prefixlen=delegated_prefixlen, name=name, description=description)
    prefix.full_clean(exclude=["network", "tenant", "parent", "nas"], validate_unique=False,
                      validate_constraints=False)
    with _constraint_guard("network"):
        prefix.save()
    audit.record("ipam.prefix.create", prefix, actor=actor, network=str(net), role=role,
                 parent=parent.pk if parent else None)
    if gateway:
        create_reservation(actor=actor, tenant=tenant, network=gateway, kind=Reservation.Kind.GATEWAY, nas=nas,
                           description=f"Gateway of {net}")
    return prefix


_PREFIX_MUTABLE = {"name", "description", "nas"}


@transaction.atomic
def update_prefix(prefix: Prefix, *, actor, **fields) -> Prefix:
    """Change a prefix's name, description or NAS. Its network, parent, role and
    delegation size never change (delete and re-create it instead)."""
    prefix = lock_pools([prefix.pk])[prefix.pk]
    fixed = {k for k, v in fields.items() if k not in _PREFIX_MUTABLE and getattr(prefix, k, object()) != v}
    if fixed:
        raise ValidationError({k: ["This cannot be changed after creation; delete and re-create the prefix."]
                               for k in sorted(fixed)})
    fields = {k: v for k, v in fields.items() if k in _PREFIX_MUTABLE}
    _check_nas(fields.get("nas"), prefix.tenant_id)
    for k, v in fields.items():
        setattr(prefix, k, v)
    prefix.full_clean(exclude=["network", "tenant", "parent", "nas"], validate_unique=False,
                      validate_constraints=False)
    prefix.save(update_fields=list(fields) or None)
    audit.record("ipam.prefix.update", prefix, actor=actor, fields=sorted(fields))
    return prefix


@transaction.atomic
def delete_prefix(prefix: Prefix, *, actor) -> None:
    """Delete a prefix that has no sub-prefixes and nothing assigned from it."""
    prefix = lock_pools([prefix.pk])[prefix.pk]
    if prefix.assignments.exists():
        raise ValidationError({"prefix": [f"{prefix.network} still has assignments; release them first."]})
    if prefix.children.exists():
        raise ValidationError({"prefix": [f"{prefix.network} still has sub-prefixes; delete them first."]})
    audit.record("ipam.prefix.delete", prefix, actor=actor, network=str(prefix.network))
    prefix.delete()


# -- reservations -----------------------------------------------------------------------------


@transaction.atomic
def create_reservation(*, actor, tenant, network, kind: str = Reservation.Kind.OTHER, nas: Nas | None = None,
                       description: str = "") -> Reservation:
    """Reserve an address or block so it is never handed out. Guarantees: it covers no
    assignment and overlaps no other reservation; taken under the lock of every pool
    it touches, so no allocation can slip into it meanwhile."""
    try:
        net = to_network(network)
    except ValidationError as exc:
        raise ValidationError({"network": exc.messages}) from None
    if kind not in Reservation.Kind.values:
        raise ValidationError({"kind": [f"Unknown kind {kind!r}."]})
    _check_nas(nas, tenant.id)
    lock_pools(Prefix.objects.filter(tenant=tenant).overlapping(net).values_list("pk", flat=True))
    for a in Assignment.objects.filter(tenant=tenant).overlapping(net).select_related("customer", "nas")[:5]:
        holder = f"customer {a.customer.username}" if a.customer_id else f"NAS {a.nas.name}"
        raise ValidationError({"network": [f"{a.network} is assigned to {holder}; release it before reserving."]})
    for r in Reservation.objects.filter(tenant=tenant).overlapping(net)[:1]:
        raise ValidationError({"network": [f"{net} overlaps the reservation {r.network} ({r.get_kind_display()})."]})
    reservation = Reservation(tenant=tenant, network=net, kind=kind, nas=nas, description=description)
    with _constraint_guard("network"):
        reservation.save()
    audit.record("ipam.reservation.create", reservation, actor=actor, network=str(net), kind=kind)
    return reservation


@transaction.atomic
def update_reservation(reservation: Reservation, *, actor, **fields) -> Reservation:
    """Change a reservation's kind, NAS or description (not its network)."""
    allowed = {"kind", "nas", "description"}
    fixed = {k for k, v in fields.items() if k not in allowed and getattr(reservation, k, object()) != v}
    if fixed:
        raise ValidationError({k: ["This cannot be changed; delete and re-create the reservation."]
                               for k in sorted(fixed)})
    fields = {k: v for k, v in fields.items() if k in allowed}
    if "kind" in fields and fields["kind"] not in Reservation.Kind.values:
        raise ValidationError({"kind": [f"Unknown kind {fields['kind']!r}."]})
    _check_nas(fields.get("nas"), reservation.tenant_id)
    for k, v in fields.items():
        setattr(reservation, k, v)
    reservation.save(update_fields=list(fields) or None)
    audit.record("ipam.reservation.update", reservation, actor=actor, fields=sorted(fields))
    return reservation


@transaction.atomic
def delete_reservation(reservation: Reservation, *, actor) -> None:
    """Free a reserved address for allocation."""
    audit.record("ipam.reservation.delete", reservation, actor=actor, network=str(reservation.network))
    reservation.delete()


# -- assignments -------------------------------------------------------------------------------


class Ipv6Assignments(NamedTuple):
    link: Assignment
    delegated: Assignment | None


def _parse_request(address) -> tuple[IPNetwork, bool]:
    """Parse a requested address/prefix; returns (network, had_explicit_length)."""
    text = str(address).strip()
    try:
        return to_network(text), "/" in text
    except ValidationError as exc:
        raise ValidationError({"address": exc.messages}) from None


def _pool_for(tenant_id: int, net: IPNetwork, role: str) -> Prefix:
    """The most specific prefix containing `net`, which must have `role`."""
    containing = list(Prefix.objects.filter(tenant_id=tenant_id).containing(net))
    if not containing:
        raise ValidationError({"address": [f"{net.ip} is not inside any prefix of this ISP."]})
    pool = max(containing, key=lambda p: p.network.prefixlen)
    if pool.role != role:
        raise ValidationError({"address": [f"{net.ip} lies in {pool.network}, {_a(ROLE_NOUN[pool.role])}, "
                                           f"not {_a(ROLE_NOUN[role])}."]})
    return pool


def _candidate_pools(tenant_id: int, role: str, *, nas: Nas | None = None, prefix: Prefix | None = None) -> list[Prefix]:
    """Pools to allocate from, in order of preference: the one named; else the NAS's
    own pools before tenant-wide ones, each by address."""
    if prefix is not None:
        if prefix.tenant_id != tenant_id:
            raise ValidationError({"prefix": ["The pool belongs to another tenant."]})
        if prefix.role != role:
            raise ValidationError({"prefix": [f"{prefix.network} is {_a(ROLE_NOUN[prefix.role])}, "
                                              f"not {_a(ROLE_NOUN[role])}."]})
        return [prefix]
    qs = Prefix.objects.filter(tenant_id=tenant_id, role=role)
    if nas is not None:
        _check_nas(nas, tenant_id)
        qs = qs.filter(Q(nas=nas) | Q(nas__isnull=True))
    pools = sorted(qs, key=lambda p: (0 if nas is not None and p.nas_id == nas.pk else 1, p.network.first))
    if not pools:
        where = f" for NAS {nas.name}" if nas is not None else ""
        raise ValidationError({"prefix": [f"There is no {ROLE_NOUN[role]}{where}."]})
    return pools


def _assign(*, actor, tenant_id: int, kind: str, pools: list[Prefix], customer: Customer | None = None,
            nas: Nas | None = None, interface: str = "", address=None, description: str = "") -> Assignment:
    """Hand out `address` (checked) or the lowest free unit of the first pool with room.
    The caller holds the customer lock; this takes the pool locks."""
    locked = lock_pools([p.pk for p in pools])
    pools = [locked[p.pk] for p in pools]
    customer_id = customer.pk if customer is not None else None
    if address is not None:
        pool = pools[0]
        net, explicit = _parse_request(address)
        unit = pool.unit_prefixlen
        if not explicit and unit is not None and net.prefixlen != unit:
            net, _ = _parse_request(f"{net.ip}/{unit}")
        problems = selectors.candidate_problems(pool, net, exclude_customer_id=customer_id)
        if problems:
            raise ValidationError({"address": problems})
    else:
        for pool in pools:
            net = selectors.first_free(pool, customer_id=customer_id)
            if net is not None:
                break
        else:
            unit = pools[0].unit_prefixlen
            raise ValidationError({"prefix": [f"No free /{unit} left in " + ", ".join(str(p.network) for p in pools)
                                              + "."]})
    assert_pool_locked(pool.pk)
    assignment = Assignment(tenant_id=tenant_id, prefix=pool, customer=customer, nas=nas, interface=interface,
                            network=net, kind=kind, description=description)
    with _constraint_guard("address"):
        assignment.save()
    audit.record("ipam.assign", assignment, actor=actor, network=str(net), kind=kind, customer=customer_id,
                 nas=nas.pk if nas is not None else None)
    if customer_id:
        _notify_radius(tenant_id, [customer_id])  # router interfaces are not in any RADIUS reply
    return assignment


def _check_eligible(customer: Customer, kind: str) -> None:
    if customer.customer_type not in ELIGIBLE_TYPES[kind]:
        raise ValidationError({"customer": [
            f"A {customer.get_customer_type_display()} customer cannot hold a {Assignment.Kind(kind).label}."
        ]})


def _mirror_static_ip(customer: Customer, ip: str | None) -> None:
    """Keep `Customer.static_ip` equal to the managed static IPv4 (a denormalised copy
    the rest of the system reads); IPAM is the only writer of the pair."""
    if (customer.static_ip or None) != ip:
        Customer.objects.filter(pk=customer.pk).update(static_ip=ip, updated_at=timezone.now())
        customer.static_ip = ip


@transaction.atomic
def assign_customer_prefix(customer: Customer, kind: str, *, actor, prefix: Prefix | None = None, address=None,
                           nas: Nas | None = None, replace: bool = False, description: str = "") -> Assignment:
    """Give `customer` one assignment of `kind` (ipv4_static, ipv6_link, ipv6_delegated):
    `address` if given (with a clear error naming who holds it, if taken), else the
    lowest free unit of `prefix`, or of the NAS's pools, or of the tenant's pools.

    Guarantees: the customer type may hold this kind; the customer holds at most one of
    each kind (asking again returns the existing one; a different address needs
    `replace=True`, which releases the old one in the same transaction); the
    assignment obeys every rule in models.py; concurrent calls never hand out one
    address twice (customer row lock, then pool row lock, then constraints)."""
    if kind not in ELIGIBLE_TYPES:
        raise ValidationError({"kind": [f"Customers hold {', '.join(ELIGIBLE_TYPES)}, not {kind!r}."]})
    customer = lock_customer(customer)
    _check_eligible(customer, kind)
    role = KIND_ROLE[kind]
    existing = customer.ip_assignments.filter(kind=kind).select_related("prefix").first()
    requested = None
    if address is not None:
        requested, _ = _parse_request(address)
        if prefix is None:
            prefix = _pool_for(customer.tenant_id, requested, role)
    if existing is not None:
        same = (existing.network.ip == requested.ip if requested is not None
                else prefix is None or existing.prefix_id == prefix.pk)
        if same:
            return existing
        if not replace:
            raise ValidationError({"address": [
                f"Customer {customer.username} already has {existing.network}; release it first."
            ]})
    pools = _candidate_pools(customer.tenant_id, role, nas=nas, prefix=prefix)
    lock_pools([p.pk for p in pools] + ([existing.prefix_id] if existing is not None else []))
    if existing is not None:
        _release(existing, actor=actor, customer=customer)
    assignment = _assign(actor=actor, tenant_id=customer.tenant_id, kind=kind, pools=pools, customer=customer,
                         address=address, description=description)
    if kind == Assignment.Kind.IPV4_STATIC:
        _mirror_static_ip(customer, str(assignment.network.ip))
    return assignment


def assign_static_ip(customer: Customer, prefix: Prefix | None = None, *, actor, address=None,
                     nas: Nas | None = None, replace: bool = False) -> Assignment:
    """Give a PPPoE or static-IP customer a static IPv4 (RADIUS Framed-IP-Address):
    the requested `address`, or the lowest free one of `prefix` / the NAS's static
    pools / the tenant's static pools. Never the network, broadcast, a reserved or
    router address, nor one inside a dynamic pool. Mirrors it into Customer.static_ip."""
    return assign_customer_prefix(customer, Assignment.Kind.IPV4_STATIC, actor=actor, prefix=prefix,
                                  address=address, nas=nas, replace=replace)


@transaction.atomic
def assign_ipv6(customer: Customer, *, actor, nas: Nas | None = None, link_pool: Prefix | None = None,
                delegated_pool: Prefix | None = None, delegate: bool = True) -> Ipv6Assignments:
    """Give a PPPoE customer a /64 for the link (Framed-IPv6-Prefix) and, with
    `delegate`, a /56 or /60 (the pool's size) to route behind it
    (Delegated-IPv6-Prefix), from the NAS's pools first. Idempotent: what the customer
    already holds is kept. Both or neither are written."""
    customer = lock_customer(customer)
    link = assign_customer_prefix(customer, Assignment.Kind.IPV6_LINK, actor=actor, prefix=link_pool, nas=nas)
    delegated = None
    if delegate:
        delegated = assign_customer_prefix(customer, Assignment.Kind.IPV6_DELEGATED, actor=actor,
                                           prefix=delegated_pool, nas=nas)
    return Ipv6Assignments(link, delegated)


@transaction.atomic
def assign_interface(nas: Nas, prefix: Prefix | None = None, *, actor, address=None, interface: str = "",
                     description: str = "") -> Assignment:
    """Record an address (or a block, e.g. a /31 link) of a router interface, from an
    infrastructure prefix: `address` if given (its pool is the most specific prefix
    containing it), else the lowest free address of `prefix`."""
    if prefix is None and address is None:
        raise ValidationError({"address": ["Give the address, or the infrastructure prefix to take one from."]})
    requested = None
    if address is not None:
        requested, explicit = _parse_request(address)
        if prefix is None:
            prefix = _pool_for(nas.tenant_id, requested, Prefix.Role.INFRASTRUCTURE)
        requested = str(requested) if explicit else str(requested.ip)
    pools = _candidate_pools(nas.tenant_id, Prefix.Role.INFRASTRUCTURE, prefix=prefix)
    return _assign(actor=actor, tenant_id=nas.tenant_id, kind=Assignment.Kind.INTERFACE, pools=pools, nas=nas,
                   interface=interface, address=requested, description=description)


def _release(assignment: Assignment, *, actor, customer: Customer | None = None) -> None:
    audit.record("ipam.release", assignment, actor=actor, network=str(assignment.network), kind=assignment.kind,
                 customer=assignment.customer_id, nas=assignment.nas_id)
    assignment.delete()
    if assignment.customer_id:
        if assignment.kind == Assignment.Kind.IPV4_STATIC:
            holder = customer if customer is not None else Customer.objects.get(pk=assignment.customer_id)
            if (holder.static_ip or None) == str(assignment.network.ip):
                _mirror_static_ip(holder, None)
        _notify_radius(assignment.tenant_id, [assignment.customer_id])


@transaction.atomic
def release(assignment: Assignment, *, actor) -> None:
    """Return an address or prefix to its pool (idempotent: releasing twice is a no-op).
    A released static IPv4 is cleared from Customer.static_ip too. Releasing takes the
    customer's lock but no pool lock: freeing space cannot create a conflict, and an
    allocation running meanwhile merely does not see the address free yet."""
    customer = lock_customer(assignment.customer) if assignment.customer_id else None
    current = Assignment.objects.filter(pk=assignment.pk).first()
    if current is not None:
        _release(current, actor=actor, customer=customer)


@transaction.atomic
def release_customer(customer: Customer, *, actor, kinds: Iterable[str] | None = None) -> int:
    """Release the customer's assignments (all, or of `kinds`); returns how many."""
    customer = lock_customer(customer)
    qs = customer.ip_assignments.all()
    if kinds is not None:
        qs = qs.filter(kind__in=list(kinds))
    assignments = list(qs)
    for a in assignments:
        _release(a, actor=actor, customer=customer)
    return len(assignments)


@transaction.atomic
def sync_customer(customer: Customer, *, actor) -> list[Assignment]:
    """Bring a customer's assignments in line with the customer record, after it was
    created or changed (type, static_ip): release every kind its type may no longer
    hold (a type change), and make the static IPv4 follow `Customer.static_ip`
    (assign it if new, move it if changed, release it if cleared). Raises
    ValidationError, naming the reason, if the requested static IP cannot be had.
    Returns the assignments the customer holds afterwards."""
    customer = lock_customer(customer)
    held = {a.kind: a for a in customer.ip_assignments.all()}
    for kind, a in list(held.items()):
        if customer.customer_type not in ELIGIBLE_TYPES.get(kind, frozenset({customer.customer_type})):
            _release(a, actor=actor, customer=customer)
            del held[kind]
    static = held.get(Assignment.Kind.IPV4_STATIC)
    if customer.customer_type in ELIGIBLE_TYPES[Assignment.Kind.IPV4_STATIC]:
        if customer.static_ip and (static is None or str(static.network.ip) != customer.static_ip):
            assign_customer_prefix(customer, Assignment.Kind.IPV4_STATIC, actor=actor, address=customer.static_ip,
                                   replace=True)
        elif not customer.static_ip and static is not None:
            _release(static, actor=actor, customer=customer)
    return list(customer.ip_assignments.all())


# -- CSV import -------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import did: with any bad row (or a dry run) nothing is written."""

    rows: int = 0
    created: int = 0
    errors: list[dict] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created if self.ok and not self.dry_run else 0,
                "valid": self.created, "errors": self.errors, "dry_run": self.dry_run}


def _messages(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {("row" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"row": exc.messages}


def _read_csv(text: str, required: set[str]) -> tuple[list[dict], list[dict]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = required - set(header)
    if missing:
        return [], [{"row": 1, "errors": {"header": [f"Missing column(s): {', '.join(sorted(missing))}."]}}]
    reader.fieldnames = header
    rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return rows, []


def _find_nas(tenant, value: str) -> Nas:
    qs = Nas.objects.filter(tenant=tenant)
    try:
        by_address = qs.filter(ip_address=str(IPAddress(value))).first()
    except (AddrFormatError, ValueError):
        by_address = None  # not an address: try the name
    if by_address is not None:
        return by_address
    matches = list(qs.filter(name=value)[:2])
    if len(matches) != 1:
        raise ValidationError({"nas": [f"No single NAS of this ISP has the address or name {value!r}."]})
    return matches[0]


def _run_import(rows: list[dict], handle, result: ImportResult) -> None:
    with transaction.atomic():
        for number, row in enumerate(rows, start=2):
            result.rows += 1
            try:
                with transaction.atomic():
                    handle(row)
                result.created += 1
            except ValidationError as exc:
                result.errors.append({"row": number, "errors": _messages(exc)})
        if result.errors or result.dry_run:
            transaction.set_rollback(True)


def import_prefixes_csv(text: str, *, actor, tenant, dry_run: bool = False) -> ImportResult:
    """Import prefixes from CSV (columns: network, role, and optionally parent — the
    parent's network, existing or earlier in the file —, nas — its IP address or name —,
    delegated_prefixlen, name, description, gateway). Every row goes through
    `create_prefix`; every bad row is reported with its line number and reasons, and
    then nothing is written (all or nothing)."""
    result = ImportResult(dry_run=dry_run)
    rows, header_errors = _read_csv(text, {"network", "role"})
    if header_errors:
        result.errors = header_errors
        return result

    def handle(row: dict) -> None:
        parent = nas = None
        if row.get("parent"):
            try:
                parent = Prefix.objects.get(tenant=tenant, network=to_network(row["parent"]))
            except (Prefix.DoesNotExist, ValidationError):
                raise ValidationError({"parent": [f"No prefix {row['parent']} in this ISP."]}) from None
        if row.get("nas"):
            nas = _find_nas(tenant, row["nas"])
        dlen = row.get("delegated_prefixlen") or None
        if dlen is not None and not dlen.isdigit():
            raise ValidationError({"delegated_prefixlen": [f"{dlen!r} is not a prefix length."]})
        create_prefix(actor=actor, tenant=tenant, network=row["network"], role=row["role"], parent=parent, nas=nas,
                      delegated_prefixlen=int(dlen) if dlen else None, name=row.get("name", ""),
                      description=row.get("description", ""), gateway=row.get("gateway") or None)

    _run_import(rows, handle, result)
    return result


def import_assignments_csv(text: str, *, actor, tenant, dry_run: bool = False) -> ImportResult:
    """Import assignments from CSV (columns: network, kind, and customer — username —
    for customer kinds, or nas — IP address or name — and interface for router
    interfaces; description optional; other columns such as an export's prefix and
    since are ignored). Each row goes through the assign services, so every rule
    applies; every bad row is reported, and then nothing is written."""
    result = ImportResult(dry_run=dry_run)
    rows, header_errors = _read_csv(text, {"network", "kind"})
    if header_errors:
        result.errors = header_errors
        return result

    def handle(row: dict) -> None:
        kind = row["kind"]
        if kind == Assignment.Kind.INTERFACE:
            if not row.get("nas"):
                raise ValidationError({"nas": ["An interface address needs the NAS."]})
            assign_interface(_find_nas(tenant, row["nas"]), actor=actor, address=row["network"],
                             interface=row.get("interface", ""), description=row.get("description", ""))
            return
        if kind not in ELIGIBLE_TYPES:
            raise ValidationError({"kind": [f"Unknown kind {kind!r}; use one of {', '.join(Assignment.Kind.values)}."]})
        customer = Customer.objects.filter(tenant=tenant, username=row.get("customer", "")).first()
        if customer is None:
            raise ValidationError({"customer": [f"No customer {row.get('customer', '')!r} in this ISP."]})
        assign_customer_prefix(customer, kind, actor=actor, address=row["network"],
                               description=row.get("description", ""))

    _run_import(rows, handle, result)
    return result
