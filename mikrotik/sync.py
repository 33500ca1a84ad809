"""Push the system's view of a router (profiles and pools) to a MikroTik and repair drift.

What is managed, per NAS (see :func:`desired_state`):

* ``/ppp/profile`` -- one per active PPPoE package of the NAS's tenant;
* ``/ip/hotspot/user/profile`` -- one per active hotspot package;
* ``/ip/pool`` -- one per IPv4 ``customer_dynamic`` prefix bound to the NAS;
* ``/ipv6/pool`` -- one per ``ipv6_delegated`` prefix bound to the NAS.

Naming (stable, so renaming a package or prefix never orphans an item):

* package profiles are named ``pkg-<package id>``; their comment is
  ``isp: <package name>``;
* pools are named ``prefix.name`` if set, else ``pool-<prefix id>``; their
  comment is ``isp: prefix <network>``.

Ownership marker: an item on the router is *managed* by us if and only if
its ``comment`` starts with :data:`MARKER` (``'isp:'``). Guarantees:

* items without the marker are never set or removed, even if their name is one
  we want (such a clash is reported as a ``conflict`` change and an error, and
  nothing is sent for it); RouterOS' built-in ``default`` profiles have no
  marker and so are never touched;
* only the fields in :data:`MANAGED_FIELDS` are compared and written; every
  other attribute an operator set on a managed item is left as it is;
* values are compared as the strings RouterOS prints, so a second sync of an
  unchanged database sends no command other than one ``print`` per menu;
* a sync is a diff against what the router has *now*, so re-running it (after
  a lost connection, or concurrently with manual changes) is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.utils import timezone
from netaddr import IPAddress, IPNetwork

from ispcore.core.models import JobRun

from .client import RouterCommandError, RouterConnection, RouterError, connect, with_retries

logger = logging.getLogger(__name__)

MARKER = "isp:"
JOB_KIND = "mikrotik_sync"

PPP_PROFILE = "/ppp/profile"
HOTSPOT_PROFILE = "/ip/hotspot/user/profile"
IP_POOL = "/ip/pool"
IPV6_POOL = "/ipv6/pool"

#: Menus we sync, in the order they are read and written.
MENUS: tuple[str, ...] = (PPP_PROFILE, HOTSPOT_PROFILE, IP_POOL, IPV6_POOL)

#: The attributes we own on each menu (``name`` is the key, always present).
MANAGED_FIELDS: dict[str, tuple[str, ...]] = {
    PPP_PROFILE: ("name", "comment", "rate-limit"),
    HOTSPOT_PROFILE: ("name", "comment", "rate-limit"),
    IP_POOL: ("name", "comment", "ranges"),
    IPV6_POOL: ("name", "comment", "prefix", "prefix-length"),
}

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


def desired_state(nas: Any) -> DesiredState:
    """What the router should have, computed from the database.

    Returns ``{menu: [item, ...]}`` for every menu in :data:`MENUS` (possibly
    empty lists), each item a dict of the :data:`MANAGED_FIELDS` with string
    values, sorted by name. Names are unique within a menu (if two prefixes
    share a ``name``, the one created later is named ``pool-<id>``).
    """
    from ipam.models import Prefix
    from ispcore.catalog.models import Package

    state: DesiredState = {menu: [] for menu in MENUS}
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
    for menu in MENUS:
        state[menu].sort(key=lambda item: item["name"])
    return state


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
        return asdict(self)


def diff(desired: Mapping[str, Iterable[Mapping[str, str]]], actual: ActualState) -> tuple[list[Change], int]:
    """Changes that turn ``actual`` into ``desired``, and how many desired items already match.

    Keyed by ``name`` within each menu of ``desired``; menus absent from
    ``desired`` are not looked at. Guarantees: unmanaged items (see
    :func:`is_managed`) never get a set or remove; only managed fields are
    compared (as strings; a missing attribute counts as ``''``); a ``set``
    carries only the fields that differ. Order: per menu, adds, sets,
    conflicts, then removes, each by name.
    """
    changes: list[Change] = []
    unchanged = 0
    for menu, wanted_items in desired.items():
        fields = MANAGED_FIELDS.get(menu, ("name",))
        current: dict[str, Mapping[str, str]] = {}
        for item in actual.get(menu, ()):
            if item.get("name"):
                current.setdefault(item["name"], item)
        adds, sets, conflicts = [], [], []
        wanted_names = set()
        for wanted in sorted(wanted_items, key=lambda item: item["name"]):
            name = wanted["name"]
            wanted_names.add(name)
            have = current.get(name)
            if have is None:
                adds.append(Change(menu, "add", name, fields={k: str(wanted.get(k, "")) for k in fields}))
                continue
            if not is_managed(have):
                conflicts.append(Change(menu, "conflict", name, item_id=have.get(".id", "")))
                continue
            differing = {k: str(wanted.get(k, "")) for k in fields
                         if k != "name" and str(wanted.get(k, "")) != have.get(k, "")}
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
    job_run_id: int | None = None

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
                "errors_detail": self.errors, "changes": [c.as_dict() for c in self.changes]}


def read_actual(conn: RouterConnection, menus: Iterable[str] = MENUS) -> dict[str, list[dict[str, str]]]:
    """Every item of each menu as the router prints it (one ``print`` per menu)."""
    return {menu: conn.print(menu) for menu in menus}


def _apply(conn: RouterConnection, change: Change) -> None:
    if change.action == "add":
        conn.add(change.menu, **change.fields)
    elif change.action == "set":
        conn.set(change.menu, change.item_id, **change.fields)
    elif change.action == "remove":
        conn.remove(change.menu, change.item_id)


def _error(change: Change, message: str) -> dict[str, str]:
    return {"menu": change.menu, "name": change.name, "action": change.action, "message": message}


def sync_once(conn: RouterConnection, desired: DesiredState, result: SyncResult) -> SyncResult:
    """One pass over an open connection: read, diff, apply; fills and returns ``result``.

    A ``!trap`` on one item is recorded in ``result.errors`` and the pass goes
    on (a ``!trap`` on a menu's print skips that menu); transient errors (lost
    connection) propagate.
    """
    result.added = result.updated = result.removed = 0
    result.errors = []
    actual: dict[str, list[dict[str, str]]] = {}
    readable: DesiredState = {}
    for menu, items in desired.items():
        try:
            actual[menu] = conn.print(menu)
        except RouterCommandError as exc:  # e.g. the hotspot package is not installed
            result.errors.append({"menu": menu, "name": "", "action": "print", "message": exc.message})
            continue
        readable[menu] = items
    result.changes, result.unchanged = diff(readable, actual)
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

    A ``JobRun(kind='mikrotik_sync', key=str(nas.id))`` records the outcome:
    ``succeeded`` if every change applied (or, for a dry run, was computed),
    ``failed`` if any item was refused or clashed (``errors`` lists them,
    ``result`` holds the counts and changes) or the sync could not finish.
    Permanent router errors (auth, TLS) and the last transient error are
    re-raised after being recorded.
    """
    desired = desired_state(nas)
    job = JobRun.objects.create(tenant_id=nas.tenant_id, kind=JOB_KIND, key=str(nas.pk),
                                total=sum(len(items) for items in desired.values()))
    result = SyncResult(nas_id=nas.pk, dry_run=dry_run, job_run_id=job.pk)
    given = [connection] if connection is not None else []

    def attempt() -> SyncResult:
        result.attempts += 1
        if given and not given[0].closed:
            return sync_once(given.pop(), desired, result)
        given.clear()
        with open_connection(nas, host=host, port=port, timeout=timeout) as conn:
            return sync_once(conn, desired, result)

    try:
        with_retries(attempt, attempts=attempts, backoff=backoff)
    except RouterError as exc:
        job.status = JobRun.Status.FAILED
        job.errors = [*result.errors, {"message": str(exc), "error": type(exc).__name__}]
        job.result = result.as_dict()
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "errors", "result", "finished_at"])
        raise
    job.status = JobRun.Status.SUCCEEDED if result.ok else JobRun.Status.FAILED
    job.errors = result.errors
    job.result = result.as_dict()
    job.progress = job.total
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "errors", "result", "progress", "finished_at"])
    logger.info("Router sync of NAS %s%s: %s", nas.pk, " (dry run)" if dry_run else "", result.counts())
    return result


def drift_report(nas: Any, **kwargs: Any) -> SyncResult:
    """What :func:`sync_router` would change, without changing anything (only prints are sent)."""
    return sync_router(nas, dry_run=True, **kwargs)
