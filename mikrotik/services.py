"""What the rest of the system asks of a MikroTik: its status, its live sessions,
kicking a session, and queueing a sync.

Every function opens its own API connection with the NAS's stored credentials
(see :func:`mikrotik.sync.open_connection`), retries transient failures a few
times (:func:`mikrotik.client.with_retries`) and raises a
:class:`~mikrotik.client.RouterError` when the router cannot be reached or
refuses the login. None of them may be called inside a database transaction
that should not wait on a router: they do network I/O.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import transaction

from ispcore.core import audit

from .client import RouterCommandError, RouterConnection, with_retries
from .sync import open_connection

logger = logging.getLogger(__name__)

PPP_ACTIVE = "/ppp/active"
HOTSPOT_ACTIVE = "/ip/hotspot/active"


@dataclass
class ActiveSession:
    """One live session as the router reports it (``kind`` is ``ppp`` or ``hotspot``)."""

    kind: str
    id: str
    username: str
    address: str
    caller_id: str
    uptime: str
    service: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class RouterStatus:
    """What :func:`router_status` read: identity, RouterOS version, uptime, resources, sessions.

    ``resource`` is ``/system/resource`` as printed (strings); ``notes`` says
    what could not be read (e.g. no hotspot package) without failing the rest.
    """

    nas_id: int
    identity: str
    version: str
    uptime: str
    board_name: str
    cpu_load: str
    free_memory: str
    total_memory: str
    resource: dict[str, str]
    ppp_sessions: list[ActiveSession] = field(default_factory=list)
    hotspot_sessions: list[ActiveSession] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ppp_active"] = len(self.ppp_sessions)
        data["hotspot_active"] = len(self.hotspot_sessions)
        return data


def _ppp(row: dict[str, str]) -> ActiveSession:
    return ActiveSession("ppp", row.get(".id", ""), row.get("name", ""), row.get("address", ""),
                         row.get("caller-id", ""), row.get("uptime", ""), row.get("service", ""))


def _hotspot(row: dict[str, str]) -> ActiveSession:
    return ActiveSession("hotspot", row.get(".id", ""), row.get("user", ""), row.get("address", ""),
                         row.get("mac-address", ""), row.get("uptime", ""), row.get("server", ""))


def _read_sessions(conn: RouterConnection, notes: list[str], **query: str) -> list[ActiveSession]:
    """PPP then hotspot sessions (``query`` narrows by ``username``). A menu the router
    does not have (a ``!trap`` on print) gives no sessions and a note, never an error."""
    username = query.get("username")
    sessions: list[ActiveSession] = []
    for menu, parse, key in ((PPP_ACTIVE, _ppp, "name"), (HOTSPOT_ACTIVE, _hotspot, "user")):
        try:
            rows = conn.print(menu, **({key: username} if username is not None else {}))
        except RouterCommandError as exc:
            notes.append(f"{menu}: {exc.message}")
            continue
        sessions.extend(parse(row) for row in rows)
    return sessions


def active_sessions(nas: Any, *, timeout: float = 10, attempts: int = 3) -> list[ActiveSession]:
    """Every live PPP and hotspot session on the router (``/ppp/active``, ``/ip/hotspot/active``)."""

    def read() -> list[ActiveSession]:
        with open_connection(nas, timeout=timeout) as conn:
            return _read_sessions(conn, [])

    return with_retries(read, attempts=attempts)


def router_status(nas: Any, *, timeout: float = 10, attempts: int = 3) -> RouterStatus:
    """Read the router's identity, version, uptime and resources, and its live sessions.

    Guarantees: only reads (prints) are sent; a missing hotspot package is a
    note, not an error; unreachable routers and refused logins raise.
    """

    def read() -> RouterStatus:
        with open_connection(nas, timeout=timeout) as conn:
            resource = conn.resource()
            identity = conn.identity()
            notes: list[str] = []
            status = RouterStatus(
                nas_id=nas.pk, identity=identity, version=resource.get("version", ""),
                uptime=resource.get("uptime", ""), board_name=resource.get("board-name", ""),
                cpu_load=resource.get("cpu-load", ""), free_memory=resource.get("free-memory", ""),
                total_memory=resource.get("total-memory", ""), resource=resource, notes=notes,
            )
            for session in _read_sessions(conn, notes):
                (status.ppp_sessions if session.kind == "ppp" else status.hotspot_sessions).append(session)
            return status

    return with_retries(read, attempts=attempts)


def kick_session(nas: Any, username: str, *, actor: Any = None, timeout: float = 10, attempts: int = 3) -> bool:
    """Remove every live session of ``username`` from ``/ppp/active`` and ``/ip/hotspot/active``.

    This is the router-API fallback billing uses when a RADIUS
    Disconnect-Request is NAKed, times out, or is ACKed but the session
    survives. Returns True if at least one session was removed, False if the
    router had none (or they ended on their own meanwhile: a 'no such item'
    on remove counts as gone). Safe to repeat. Raises
    :class:`~mikrotik.client.RouterError` if the router cannot be reached
    or refuses the login; the kick is recorded as an audit event
    (``mikrotik.kick``) either way it removed something.
    """
    if not username:
        raise ValueError("kick_session needs a username")

    def kick() -> list[ActiveSession]:
        removed: list[ActiveSession] = []
        with open_connection(nas, timeout=timeout) as conn:
            for session in _read_sessions(conn, [], username=username):
                menu = PPP_ACTIVE if session.kind == "ppp" else HOTSPOT_ACTIVE
                try:
                    conn.remove(menu, session.id)
                except RouterCommandError as exc:  # ended between print and remove
                    logger.info("NAS %s: session %s of %s already gone: %s", nas.pk, session.id, username,
                                exc.message)
                    continue
                removed.append(session)
        return removed

    removed = with_retries(kick, attempts=attempts)
    if removed:
        with transaction.atomic():
            audit.record("mikrotik.kick", nas, actor=actor, username=username,
                         sessions=[f"{s.kind}:{s.id}:{s.address}" for s in removed])
    logger.info("NAS %s: kicked %d session(s) of %s", nas.pk, len(removed), username)
    return bool(removed)


def queue_sync(nas: Any, *, trigger: str = "manual", actor: Any = None) -> None:
    """Queue a sync of ``nas`` (the ``mikrotik.sync_router`` task) after the current transaction commits.

    Records who asked (``mikrotik.sync_queued``). The task holds the router's
    lock, so queueing twice never runs two syncs of one router at once.
    """
    from .tasks import sync_router

    with transaction.atomic():
        audit.record("mikrotik.sync_queued", nas, actor=actor, trigger=trigger)
        transaction.on_commit(lambda: sync_router.delay(nas.pk, trigger))


def prune_sync_runs(*, keep_days: int = 30, now: Any = None) -> int:
    """Delete sync runs older than ``keep_days``, always keeping each router's latest run
    (so its page still says how its last sync went). Returns how many were deleted.

    Beat syncs every router every 15 minutes, ~96 runs a day each: without pruning the
    table grows by millions of rows a year for a hundred routers."""
    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from .models import RouterSyncRun

    cutoff = (now or timezone.now()) - timezone.timedelta(days=keep_days)
    latest = RouterSyncRun.objects.filter(nas_id=OuterRef("nas_id")).order_by("-started_at", "-id").values("id")[:1]
    old = RouterSyncRun.objects.filter(started_at__lt=cutoff).exclude(id=Subquery(latest))
    deleted, _ = old.delete()
    return deleted

