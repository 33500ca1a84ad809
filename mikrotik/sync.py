"""Push the system's view of a router to a MikroTik and repair drift.

What is managed, per NAS (see :func:`desired_state`):

* ``/ppp/profile`` -- one per active PPPoE package of the NAS's tenant;
* ``/ip/hotspot/user/profile`` -- one per active hotspot package;
* ``/ip/pool`` -- one per IPv4 ``customer_dynamic`` prefix bound to the NAS;
* ``/ipv6/pool`` -- one per ``ipv6_delegated`` prefix bound to the NAS;
* ``/radius`` -- one entry (comment ``isp: radius``) pointing at our RADIUS
  server with the NAS's shared secret, services ``ppp,hotspot``; and the
  ``/radius/incoming`` settings (``accept=yes``, the NAS's CoA port). Only in
  RADIUS mode and when a RADIUS server address is known (the router's
  :class:`~mikrotik.models.RouterSettings` or ``MIKROTIK_RADIUS_ADDRESS``); in
  API-only mode our entry is removed and incoming is left alone;
* ``/ip/firewall/address-list`` -- list ``expired``: one entry per address of
  each expired or suspended customer served by the router (its static IP, and
  the framed IP of each of its open accounting sessions on this NAS), for a
  walled-garden redirect;
* ``/queue/simple`` -- one queue per static-IP customer with a package and an
  address (``cust-<customer id>``, target ``<ip>/32``, max-limit and burst
  from the package);
* ``/ppp/secret`` and ``/ip/hotspot/user`` -- in API-only mode, one per PPPoE
  (hotspot) customer: password decrypted from the customer, profile
  ``pkg-<package id>``, static remote address, disabled unless active. In
  RADIUS mode the desired list is empty, so secrets we once pushed are removed.

"Served by the router": customers of the NAS's tenant, minus those whose static
IPv4 lies in a pool bound to another NAS, and, if the router's settings name
zones, only customers of those zones (or their areas).

Naming (stable, so renaming a package, prefix or customer never orphans an item):

* package profiles are named ``pkg-<package id>``; their comment is
  ``isp: <package name>``;
* pools are named ``prefix.name`` if set, else ``pool-<prefix id>``; their
  comment is ``isp: prefix <network>``;
* address-list entries are keyed by (list, address), the /radius entry by its
  comment; every other item by ``name``.

Ownership marker: an item on the router is *managed* by us if and only if
its ``comment`` starts with :data:`MARKER` (``'isp:'``). Guarantees:

* items without the marker are never set or removed, even if their key is one
  we want (such a clash is reported as a ``conflict`` change and an error, and
  nothing is sent for it); RouterOS' built-in ``default`` profiles have no
  marker and so are never touched; items RouterOS made itself
  (``dynamic=true``, e.g. address-list entries from a RADIUS reply) are ignored;
* only the fields in :data:`MANAGED_FIELDS` are compared and written; every
  other attribute an operator set on a managed item is left as it is; on
  settings menus (``/radius/incoming``) only those fields are ever set;
* values are compared as the strings RouterOS prints, so a second sync of an
  unchanged database sends no command other than one ``print`` per menu;
* adds and sets are applied menu by menu in :data:`MENUS` order (profiles
  before the secrets that name them), removes afterwards in reverse order;
* a sync is a diff against what the router has *now*, so re-running it (after
  a lost connection, or concurrently with manual changes) is safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from netaddr import IPAddress, IPNetwork

from .client import RouterCommandError, RouterConnection, RouterError, connect, with_retries

logger = logging.getLogger(__name__)

MARKER = "isp:"

PPP_PROFILE = "/ppp/profile"
HOTSPOT_PROFILE = "/ip/hotspot/user/profile"
IP_POOL = "/ip/pool"
IPV6_POOL = "/ipv6/pool"
RADIUS = "/radius"
RADIUS_INCOMING = "/radius/incoming"
ADDRESS_LIST = "/ip/firewall/address-list"
SIMPLE_QUEUE = "/queue/simple"
PPP_SECRET = "/ppp/secret"
HOTSPOT_USER = "/ip/hotspot/user"

#: Every menu we may sync, in the order adds and sets are applied.
MENUS: tuple[str, ...] = (PPP_PROFILE, HOTSPOT_PROFILE, IP_POOL, IPV6_POOL, RADIUS, RADIUS_INCOMING,
                          ADDRESS_LIST, SIMPLE_QUEUE, PPP_SECRET, HOTSPOT_USER)

#: Single-item menus: no ids, no add/remove, only the managed fields are set.
SETTINGS_MENUS: frozenset[str] = frozenset({RADIUS_INCOMING})

#: What identifies an item within a menu (default: ``name``).
MENU_KEYS: dict[str, tuple[str, ...]] = {ADDRESS_LIST: ("list", "address"), RADIUS: ("comment",)}

#: The attributes we own on each menu (the key fields are always among them).
MANAGED_FIELDS: dict[str, tuple[str, ...]] = {
    PPP_PROFILE: ("name", "comment", "rate-limit"),
    HOTSPOT_PROFILE: ("name", "comment", "rate-limit"),
    IP_POOL: ("name", "comment", "ranges"),
    IPV6_POOL: ("name", "comment", "prefix", "prefix-length"),
    RADIUS: ("comment", "service", "address", "secret", "authentication-port", "accounting-port", "disabled"),
    RADIUS_INCOMING: ("accept", "port"),
    ADDRESS_LIST: ("list", "address", "comment", "disabled"),
    SIMPLE_QUEUE: ("name", "comment", "target", "max-limit", "burst-limit", "burst-threshold", "burst-time",
                   "priority", "disabled"),
    PPP_SECRET: ("name", "comment", "password", "service", "profile", "remote-address", "disabled"),
    HOTSPOT_USER: ("name", "comment", "password", "profile", "disabled"),
}

#: The walled-garden list that holds the addresses of expired and suspended customers.
EXPIRED_LIST = "expired"
RADIUS_COMMENT = f"{MARKER} radius"
#: What RouterOS answers for a menu whose package is not installed.
MISSING_MENU = "no such command"

#: Values never written to a run record, a log or an API answer.
SENSITIVE_FIELDS = frozenset({"password", "secret"})
HIDDEN = "********"

DesiredState = dict[str, list[dict[str, str]]]
ActualState = Mapping[str, Iterable[Mapping[str, str]]]


# -- desired state ------------------------------------------------------------------


def package_item_name(package: Any) -> str:
    """Router name of a package's profile: ``pkg-<id>`` (stable across renames)."""
    return f"pkg-{package.pk}"


def pool_item_name(prefix: Any) -> str:
    """Router name of a prefix's pool: its ``name`` if set, else ``pool-<id>`` (see :func:`desired_state`)."""
    return prefix.name or f"pool-{prefix.pk}"


def is_managed(item: Mapping[str, str]) -> bool:
    """True if the router item carries our ownership marker in its comment."""
    return item.get("comment", "").startswith(MARKER)


def _usable_range(network: IPNetwork) -> str:
    if network.size > 2:
        first, last = IPAddress(network.first + 1), IPAddress(network.last - 1)
    else:  # /31 and /32: every address is usable
        first, last = IPAddress(network.first), IPAddress(network.last)
    return f"{first}-{last}"


def router_settings(nas: Any) -> Any:
    """The NAS's :class:`~mikrotik.models.RouterSettings`, or an unsaved one with the defaults."""
    from .models import RouterSettings

    found = RouterSettings.objects.filter(nas_id=nas.pk).first()
    return found if found is not None else RouterSettings(nas_id=nas.pk)


def radius_server_address(config: Any) -> str:
    """Our RADIUS server's address for this router: its own setting, else ``MIKROTIK_RADIUS_ADDRESS``."""
    return str(config.radius_address or getattr(settings, "MIKROTIK_RADIUS_ADDRESS", "") or "")


def rate_bits(rate: str) -> str:
    """A RouterOS rate token in bits per second: ``'2M'`` -> ``'2000000'``, ``'512k'`` -> ``'512000'``.

    RouterOS reads k and M as powers of ten, the same way it reads the profile's
    rate-limit, so a queue and a PPP profile of one package limit alike.
    """
    units = {"k": 1_000, "M": 1_000_000, "G": 1_000_000_000}
    if rate and rate[-1] in units:
        return str(int(rate[:-1]) * units[rate[-1]])
    return str(int(rate or 0))


def _pair(up: int, down: int) -> str:
    from ispcore.catalog.models import format_rate

    return f"{rate_bits(format_rate(up)) if up else '0'}/{rate_bits(format_rate(down)) if down else '0'}"


def served_customers(nas: Any, config: Any = None) -> Any:
    """Customers of the NAS's tenant this router serves (see the module docstring)."""
    from ipam.models import Assignment
    from ispcore.subscribers.models import Customer

    config = config if config is not None else router_settings(nas)
    elsewhere = Assignment.objects.filter(customer_id=OuterRef("pk"), kind=Assignment.Kind.IPV4_STATIC,
                                          prefix__nas__isnull=False).exclude(prefix__nas_id=nas.pk)
    customers = Customer.objects.filter(tenant_id=nas.tenant_id).exclude(Exists(elsewhere))
    if config.pk is not None:
        zone_ids = list(config.zones.values_list("pk", flat=True))
        if zone_ids:
            customers = customers.filter(Q(zone_id__in=zone_ids) | Q(zone__parent_id__in=zone_ids))
    return customers


def static_addresses(customer_ids: Iterable[int]) -> dict[int, str]:
    """Each customer's static IPv4: its IPAM assignment, else the ``static_ip`` field."""
    from ipam.models import Assignment
    from ispcore.subscribers.models import Customer

    ids = list(customer_ids)
    found = {cid: str(IPNetwork(str(net)).ip) for cid, net in Assignment.objects.filter(
        customer_id__in=ids, kind=Assignment.Kind.IPV4_STATIC).values_list("customer_id", "network")}
    for cid, ip in Customer.objects.filter(pk__in=ids, static_ip__isnull=False).values_list("pk", "static_ip"):
        found.setdefault(cid, str(ip))
    return found


def _radius_port(name: str, default: int) -> str:
    """The port our RADIUS server listens on: the Django setting, else the environment
    variable ``make run`` gives the server (``ispcore/run.py``), else the standard port."""
    return str(getattr(settings, name, None) or os.environ.get(name) or default)


def _radius_items(nas: Any, config: Any, state: DesiredState) -> None:
    from .models import RouterSettings

    if config.access_mode == RouterSettings.AccessMode.API_ONLY:
        state[RADIUS] = []  # our entry, if any, goes; /radius/incoming is left as the operator set it
        return
    address = radius_server_address(config)
    if not address:
        logger.info("NAS %s: no RADIUS server address configured; /radius is not managed", nas.pk)
        return
    state[RADIUS] = [{
        "comment": RADIUS_COMMENT, "service": "ppp,hotspot", "address": address, "secret": nas.secret,
        "authentication-port": _radius_port("RADIUS_AUTH_PORT", 1812),
        "accounting-port": _radius_port("RADIUS_ACCT_PORT", 1813), "disabled": "false",
    }]
    state[RADIUS_INCOMING] = [{"accept": "true", "port": str(nas.coa_port)}]


def _address_list_items(nas: Any, customers: Any, state: DesiredState) -> None:
    from ispcore.subscribers.models import Customer
    from radius.models import AccountingSession

    cut_off = {cid: username for cid, username in customers.filter(
        status__in=[Customer.Status.EXPIRED, Customer.Status.SUSPENDED]).values_list("pk", "username")}
    addresses: dict[str, str] = {}
    for cid, ip in sorted(static_addresses(cut_off).items()):
        addresses.setdefault(ip, cut_off[cid])
    sessions = (AccountingSession.objects.filter(nas_id=nas.pk, stopped_at__isnull=True, customer_id__in=list(cut_off),
                                                 framed_ip_address__isnull=False)
                .order_by("started_at").values_list("customer_id", "framed_ip_address"))
    for cid, ip in sessions:
        if ":" not in str(ip):
            addresses.setdefault(str(ip), cut_off[cid])
    state[ADDRESS_LIST] = [{"list": EXPIRED_LIST, "address": ip, "comment": f"{MARKER} {username}",
                            "disabled": "false"} for ip, username in addresses.items()]


def _queue_items(customers: Any, state: DesiredState) -> None:
    from ispcore.subscribers.models import Customer

    static = (customers.filter(customer_type=Customer.CustomerType.STATIC, package__isnull=False)
              .exclude(status=Customer.Status.DISABLED).select_related("package"))
    static = {c.pk: c for c in static}
    for cid, ip in static_addresses(static).items():
        customer, package = static[cid], static[cid].package
        if not (package.upload_kbps or package.download_kbps):
            continue  # unlimited: no queue
        burst = bool(package.burst_upload_kbps or package.burst_download_kbps)
        seconds = package.burst_time_seconds if burst else 0
        state[SIMPLE_QUEUE].append({
            "name": f"cust-{cid}", "comment": f"{MARKER} {customer.username}", "target": f"{ip}/32",
            "max-limit": _pair(package.upload_kbps, package.download_kbps),
            "burst-limit": _pair(package.burst_upload_kbps, package.burst_download_kbps) if burst else "0/0",
            "burst-threshold": (_pair(package.burst_threshold_upload_kbps, package.burst_threshold_download_kbps)
                                if burst else "0/0"),
            "burst-time": f"{seconds}s/{seconds}s", "priority": f"{package.priority}/{package.priority}",
            "disabled": "false",
        })


def _api_only_items(customers: Any, state: DesiredState) -> None:
    from ispcore.subscribers.models import Customer

    wanted = customers.filter(customer_type__in=[Customer.CustomerType.PPPOE, Customer.CustomerType.HOTSPOT])
    wanted = list(wanted.select_related("package"))
    statics = static_addresses(c.pk for c in wanted if c.customer_type == Customer.CustomerType.PPPOE)
    for customer in wanted:
        package = customer.package
        pppoe = customer.customer_type == Customer.CustomerType.PPPOE
        usable = package is not None and package.is_active and package.serves(customer.customer_type)
        item = {"name": customer.username, "comment": f"{MARKER} customer {customer.pk}",
                "password": customer.password, "profile": package_item_name(package) if usable else "default",
                "disabled": "false" if customer.status == Customer.Status.ACTIVE else "true"}
        if pppoe:
            item.update({"service": "pppoe", "remote-address": statics.get(customer.pk, "")})
            state[PPP_SECRET].append(item)
        else:
            state[HOTSPOT_USER].append(item)


def desired_state(nas: Any) -> DesiredState:
    """What the router should have, computed from the database.

    Returns ``{menu: [item, ...]}`` for every menu we manage on this router (a
    menu left out is not looked at; an empty list removes our items there),
    each item a dict of the :data:`MANAGED_FIELDS` with string values, sorted
    by key. Keys are unique within a menu (if two prefixes share a ``name``, the
    one created later is named ``pool-<id>``; an address is listed once).
    """
    from ipam.models import Prefix
    from ispcore.catalog.models import Package

    from .models import RouterSettings

    config = router_settings(nas)
    state: DesiredState = {menu: [] for menu in MENUS if menu not in (RADIUS, RADIUS_INCOMING)}
    packages = Package.objects.filter(tenant_id=nas.tenant_id, is_active=True).order_by("pk")
    for package in packages:
        item = {"name": package_item_name(package), "comment": f"{MARKER} {package.name}",
                "rate-limit": package.rate_limit}
        if package.for_pppoe:
            state[PPP_PROFILE].append(dict(item))
        if package.for_hotspot:
            state[HOTSPOT_PROFILE].append(dict(item))
    prefixes = Prefix.objects.filter(nas_id=nas.pk).order_by("pk")
    used: dict[str, set[str]] = {IP_POOL: set(), IPV6_POOL: set()}
    for prefix in prefixes:
        network = IPNetwork(str(prefix.network))
        if prefix.role == Prefix.Role.CUSTOMER_DYNAMIC and network.version == 4:
            menu, extra = IP_POOL, {"ranges": _usable_range(network)}
        elif prefix.role == Prefix.Role.IPV6_DELEGATED and network.version == 6:
            menu, extra = IPV6_POOL, {"prefix": str(network.cidr), "prefix-length": str(prefix.delegated_prefixlen)}
        else:
            continue
        name = pool_item_name(prefix)
        if name in used[menu]:  # two prefixes share a name: the later one falls back to its id
            logger.warning("NAS %s: pool name %r is used by several prefixes; using pool-%s", nas.pk, name, prefix.pk)
            name = f"pool-{prefix.pk}"
        used[menu].add(name)
        state[menu].append({"name": name, "comment": f"{MARKER} prefix {network.cidr}", **extra})
    _radius_items(nas, config, state)
    customers = served_customers(nas, config)
    _address_list_items(nas, customers, state)
    _queue_items(customers, state)
    if config.access_mode == RouterSettings.AccessMode.API_ONLY:
        _api_only_items(customers, state)
    for menu, items in state.items():
        items.sort(key=lambda item: item_key(menu, item))
    return {menu: state[menu] for menu in MENUS if menu in state}


# -- diff ---------------------------------------------------------------------------


@dataclass
class Change:
    """One difference between desired and actual state.

    ``action`` is ``add`` (``fields`` = every managed field), ``set`` (``fields``
    = only the differing ones, ``old`` = their current values), ``remove`` (a
    managed item no longer desired) or ``conflict`` (the name is taken by an
    item we do not manage; nothing will be sent). ``item_id`` is the router's
    ``.id`` for set/remove/conflict.
    """

    menu: str
    action: str
    name: str
    item_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    old: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The change as plain data, with passwords and shared secrets masked (it is stored and shown)."""
        data = asdict(self)
        for part in ("fields", "old"):
            data[part] = {k: (HIDDEN if k in SENSITIVE_FIELDS and v else v) for k, v in data[part].items()}
        return data


def item_key(menu: str, item: Mapping[str, str]) -> str:
    """What identifies ``item`` in ``menu`` (see :data:`MENU_KEYS`), as one string."""
    return " ".join(str(item.get(k, "")) for k in MENU_KEYS.get(menu, ("name",)))


def _diff_settings(menu: str, wanted_items: Iterable[Mapping[str, str]],
                   actual_items: Iterable[Mapping[str, str]]) -> Change | None:
    have = next(iter(actual_items), {})
    for wanted in wanted_items:
        differing = {k: str(v) for k, v in wanted.items() if str(v) != have.get(k, "")}
        if differing:
            return Change(menu, "set", menu.rsplit("/", 1)[-1], fields=differing,
                          old={k: have.get(k, "") for k in differing})
    return None


def diff(desired: Mapping[str, Iterable[Mapping[str, str]]], actual: ActualState) -> tuple[list[Change], int]:
    """Changes that turn ``actual`` into ``desired``, and how many desired items already match.

    Keyed by :func:`item_key` within each menu of ``desired``; menus absent from
    ``desired`` are not looked at. Guarantees: unmanaged items (see
    :func:`is_managed`) never get a set or remove; dynamic items (made by
    RouterOS itself) are ignored; only managed fields are compared (as strings;
    a missing attribute counts as ``''``); a ``set`` carries only the fields
    that differ. Order: per menu, adds, sets, conflicts, then removes, each by
    key. A settings menu (:data:`SETTINGS_MENUS`) yields at most one ``set``
    of its differing fields and never a conflict.
    """
    changes: list[Change] = []
    unchanged = 0
    for menu, wanted_items in desired.items():
        if menu in SETTINGS_MENUS:
            change = _diff_settings(menu, wanted_items, actual.get(menu, ()))
            if change is None:
                unchanged += 1
            else:
                changes.append(change)
            continue
        fields = MANAGED_FIELDS.get(menu, ("name",))
        keys = MENU_KEYS.get(menu, ("name",))
        current: dict[str, Mapping[str, str]] = {}
        for item in actual.get(menu, ()):
            if item.get("dynamic") == "true" or not all(item.get(k) for k in keys):
                continue
            current.setdefault(item_key(menu, item), item)
        adds, sets, conflicts = [], [], []
        wanted_names = set()
        for wanted in sorted(wanted_items, key=lambda item: item_key(menu, item)):
            name = item_key(menu, wanted)
            wanted_names.add(name)
            have = current.get(name)
            if have is None:
                adds.append(Change(menu, "add", name, fields={k: str(wanted.get(k, "")) for k in fields}))
                continue
            if not is_managed(have):
                conflicts.append(Change(menu, "conflict", name, item_id=have.get(".id", "")))
                continue
            differing = {k: str(wanted.get(k, "")) for k in fields
                         if k not in keys and str(wanted.get(k, "")) != have.get(k, "")}
            if differing:
                sets.append(Change(menu, "set", name, item_id=have.get(".id", ""), fields=differing,
                                   old={k: have.get(k, "") for k in differing}))
            else:
                unchanged += 1
        removes = [Change(menu, "remove", name, item_id=item.get(".id", ""))
                   for name, item in sorted(current.items()) if name not in wanted_names and is_managed(item)]
        changes.extend([*adds, *sets, *conflicts, *removes])
    return changes, unchanged


# -- sync ---------------------------------------------------------------------------


@dataclass
class SyncResult:
    """Outcome of one sync (or dry run) of one router.

    Counts and ``changes`` describe the last attempt (after a transient
    failure the whole sync is re-run from a fresh read, so earlier attempts'
    work shows up as ``unchanged``). ``errors`` holds one dict per item the
    router refused (``!trap``) or that clashed with an unmanaged item.
    In a dry run nothing is sent except prints and the counts say what *would*
    change.
    """

    nas_id: int
    dry_run: bool
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    attempts: int = 0
    run_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def in_sync(self) -> bool:
        """True if the router matched the database (no change needed, no conflict)."""
        return not self.changes

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged, "errors": len(self.errors)}

    def as_dict(self) -> dict[str, Any]:
        return {"nas_id": self.nas_id, "dry_run": self.dry_run, "attempts": self.attempts, **self.counts(),
                "errors_detail": self.errors, "notes": self.notes, "changes": [c.as_dict() for c in self.changes]}


def read_actual(conn: RouterConnection, menus: Iterable[str] = MENUS) -> dict[str, list[dict[str, str]]]:
    """Every item of each menu as the router prints it (one ``print`` per menu)."""
    return {menu: conn.print(menu) for menu in menus}


def _apply(conn: RouterConnection, change: Change) -> None:
    """Send one change. Empty values are left out of an ``add`` (the router's
    default is empty) and cleared with ``unset`` on a ``set`` (RouterOS refuses
    an empty value for some attributes, e.g. a secret's remote-address)."""
    if change.menu in SETTINGS_MENUS:
        conn.settings_set(change.menu, **change.fields)
    elif change.action == "add":
        conn.add(change.menu, **{k: v for k, v in change.fields.items() if v != ""})
    elif change.action == "set":
        conn.set(change.menu, change.item_id, **{k: v for k, v in change.fields.items() if v != ""})
        for key in (k for k, v in change.fields.items() if v == ""):
            conn.call(f"{change.menu}/unset", {".id": change.item_id, "value-name": key})
    elif change.action == "remove":
        conn.remove(change.menu, change.item_id)


def apply_order(changes: Iterable[Change]) -> list[Change]:
    """Adds, sets and conflicts in :data:`MENUS` order, then removes in reverse menu order,
    so a profile exists before a secret names it and is removed only after the secret moved off it."""
    rank = {menu: i for i, menu in enumerate(MENUS)}
    changes = list(changes)
    first = [c for c in changes if c.action != "remove"]
    last = sorted((c for c in changes if c.action == "remove"), key=lambda c: -rank.get(c.menu, 0))
    return [*first, *last]


def _error(change: Change, message: str) -> dict[str, str]:
    return {"menu": change.menu, "name": change.name, "action": change.action, "message": message}


def sync_once(conn: RouterConnection, desired: DesiredState, result: SyncResult) -> SyncResult:
    """One pass over an open connection: read, diff, apply; fills and returns ``result``.

    A ``!trap`` on one item is recorded in ``result.errors`` and the pass goes
    on. A ``!trap`` on a menu's print skips that menu: an error, except when the
    router has no such menu (package not installed) and we want nothing there,
    which is only a note. Transient errors (lost connection) propagate.
    """
    result.added = result.updated = result.removed = 0
    result.errors = []
    result.notes = []
    actual: dict[str, list[dict[str, str]]] = {}
    readable: DesiredState = {}
    for menu, items in desired.items():
        try:
            actual[menu] = conn.print(menu)
        except RouterCommandError as exc:
            if not items and MISSING_MENU in exc.message:
                # e.g. no hotspot package on a PPPoE-only router and nothing of ours to put there
                result.notes.append(f"{menu} skipped: the router has no such menu ({exc.message})")
            else:
                result.errors.append({"menu": menu, "name": "", "action": "print", "message": exc.message})
            continue
        readable[menu] = items
    changes, result.unchanged = diff(readable, actual)
    result.changes = apply_order(changes)
    for change in result.changes:
        if change.action == "conflict":
            result.errors.append(_error(change, f"an item named {change.name!r} exists on the router without "
                                                f"the {MARKER!r} comment marker; it is left alone"))
            continue
        if not result.dry_run:
            try:
                _apply(conn, change)
            except RouterCommandError as exc:
                logger.warning("Router sync of NAS %s: %s %s %s refused: %s",
                               result.nas_id, change.action, change.menu, change.name, exc.message)
                result.errors.append(_error(change, exc.message))
                continue
        if change.action == "add":
            result.added += 1
        elif change.action == "set":
            result.updated += 1
        elif change.action == "remove":
            result.removed += 1
    return result


def open_connection(nas: Any, *, host: str | None = None, port: int | None = None,
                    timeout: float = 10) -> RouterConnection:
    """Connect to the NAS's API with its stored credentials (``host``/``port`` override the NAS's)."""
    return connect(
        host or str(nas.ip_address), port or nas.api_port, nas.api_username, nas.api_password,
        use_ssl=nas.api_use_ssl, verify_tls=nas.api_verify_tls, timeout=timeout,
    )


def sync_router(
    nas: Any,
    *,
    dry_run: bool = False,
    trigger: str = "manual",
    connection: RouterConnection | None = None,
    host: str | None = None,
    port: int | None = None,
    timeout: float = 10,
    attempts: int = 3,
    backoff: float | Callable[[int], float] = 0.5,
) -> SyncResult:
    """Make the router match :func:`desired_state` (or, with ``dry_run``, only report the drift).

    Uses ``connection`` if given (it is not closed here) for the first attempt,
    otherwise opens one with :func:`open_connection` (``host``/``port``
    override the NAS's address) and closes it afterwards. Transient errors
    (``RouterUnreachable``, ``RouterConnectionLost``) re-run the whole sync on a
    new connection via :func:`~mikrotik.client.with_retries` (``attempts``,
    ``backoff``); that is safe because each run is a fresh diff.

    A :class:`~mikrotik.models.RouterSyncRun` (``trigger``: manual, beat,
    repair, drift) records the outcome: ``succeeded`` if every change applied
    (or, for a dry run, was computed), ``failed`` if any item was refused or
    clashed (``errors`` lists them) or the sync could not finish (``error``
    holds the message). Permanent router errors (auth, TLS) and the last
    transient error are re-raised after being recorded.
    """
    from .models import RouterSyncRun

    desired = desired_state(nas)
    run = RouterSyncRun.objects.create(tenant_id=nas.tenant_id, nas_id=nas.pk, trigger=trigger, dry_run=dry_run)
    result = SyncResult(nas_id=nas.pk, dry_run=dry_run, run_id=run.pk)
    given = [connection] if connection is not None else []

    def attempt() -> SyncResult:
        result.attempts += 1
        if given and not given[0].closed:
            return sync_once(given.pop(), desired, result)
        given.clear()
        with open_connection(nas, host=host, port=port, timeout=timeout) as conn:
            return sync_once(conn, desired, result)

    def finish(status: str, error: str = "") -> None:
        run.status, run.error, run.errors, run.notes = status, error, result.errors, result.notes
        run.attempts = result.attempts
        run.added, run.updated, run.removed, run.unchanged = (result.added, result.updated, result.removed,
                                                              result.unchanged)
        run.changes = [change.as_dict() for change in result.changes]
        run.finished_at = timezone.now()
        run.save()

    try:
        with_retries(attempt, attempts=attempts, backoff=backoff)
    except RouterError as exc:
        finish(RouterSyncRun.Status.FAILED, f"{type(exc).__name__}: {exc.message}")
        raise
    except Exception as exc:  # a bug must not leave the run 'running' forever
        finish(RouterSyncRun.Status.FAILED, f"internal error: {exc!r}")
        raise
    finish(RouterSyncRun.Status.SUCCEEDED if result.ok else RouterSyncRun.Status.FAILED)
    logger.info("Router sync of NAS %s%s: %s", nas.pk, " (dry run)" if dry_run else "", result.counts())
    return result


def drift_report(nas: Any, **kwargs: Any) -> SyncResult:
    """What :func:`sync_router` would change, without changing anything (only prints are sent)."""
    kwargs.setdefault("trigger", "drift")
    return sync_router(nas, dry_run=True, **kwargs)
