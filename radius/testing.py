"""Client-side helpers to build requests as a NAS would: used by the tests and
the load generator in ``bench/radius``. Not imported by the server."""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import threading
import time

from . import crypto
from .packet import AttrKey, encode, encode_attributes, ipv4, key_for, u32

ACCT_STATUS = {"start": 1, "stop": 2, "interim": 3, "on": 7, "off": 8}


def _value(key: AttrKey, value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return u32(value)
    text = str(value)
    if key in (4, 8):
        return ipv4(text)
    return text.encode("utf-8")


def attrs(pairs) -> list[tuple[AttrKey, bytes]]:
    """``[(name or key, value)]`` -> raw pairs (ints as 32-bit, IPv4 for address attributes)."""
    out = []
    for name, value in pairs:
        key = key_for(name) if isinstance(name, str) else name
        out.append((key, _value(key, value)))
    return out


def access_request(
    username: str,
    secret: bytes,
    *,
    password: str | None = None,
    method: str = "pap",
    ident: int | None = None,
    extra=(),
    message_authenticator: bool = True,
    authenticator: bytes | None = None,
) -> tuple[bytes, dict]:
    """Build an Access-Request; returns ``(raw, info)`` (info has the MS-CHAP values)."""
    ident = secrets.randbelow(256) if ident is None else ident
    authenticator = authenticator or secrets.token_bytes(16)
    pairs: list = [(1, username.encode())]
    info: dict = {"authenticator": authenticator}
    if password is not None:
        if method == "pap":
            pairs.append((2, crypto.pap_encrypt(password.encode(), secret, authenticator)))
        elif method == "chap":
            chap_id = 7
            pairs.append((3, crypto.chap_password(chap_id, password.encode(), authenticator)))
        elif method == "chap-challenge":
            challenge = secrets.token_bytes(16)
            pairs.append((3, crypto.chap_password(9, password.encode(), challenge)))
            pairs.append((60, challenge))
        elif method == "mschapv2":
            challenge = secrets.token_bytes(16)
            response = crypto.mschapv2_build_response(username.encode(), password, challenge, ident=5)
            pairs.append(((311, 11), challenge))
            pairs.append(((311, 25), response))
            info.update(challenge=challenge, response=response)
        else:
            raise ValueError(method)
    pairs.extend(attrs(extra))
    body = encode_attributes(pairs)
    raw = encode(crypto.ACCESS_REQUEST, ident, authenticator, body)
    if message_authenticator:
        raw = crypto.add_message_authenticator(raw, secret)
    return raw, info


def accounting_request(
    secret: bytes,
    status: str,
    *,
    username: str = "",
    session_id: str = "",
    ident: int | None = None,
    extra=(),
    input_octets: int = 0,
    output_octets: int = 0,
    session_time: int | None = None,
) -> bytes:
    """Build a signed Accounting-Request (64-bit counters split into gigawords)."""
    ident = secrets.randbelow(256) if ident is None else ident
    pairs: list = [(40, u32(ACCT_STATUS[status]))]
    if username:
        pairs.append((1, username.encode()))
    if session_id:
        pairs.append((44, session_id.encode()))
    if status in ("interim", "stop"):
        pairs += [
            (42, u32(input_octets & 0xFFFFFFFF)), (52, u32(input_octets >> 32)),
            (43, u32(output_octets & 0xFFFFFFFF)), (53, u32(output_octets >> 32)),
        ]
    if session_time is not None:
        pairs.append((46, u32(session_time)))
    pairs.extend(attrs(extra))
    raw = encode(crypto.ACCOUNTING_REQUEST, ident, bytes(16), encode_attributes(pairs))
    return crypto.sign_request(raw, secret)


def status_server(secret: bytes, ident: int = 1) -> bytes:
    raw = encode(crypto.STATUS_SERVER, ident, secrets.token_bytes(16), b"")
    return crypto.add_message_authenticator(raw, secret)


class UdpClient:
    """A blocking UDP client bound to a chosen source address."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", source: str = "127.0.0.1", timeout: float = 3.0):
        self.address = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)

    def send(self, raw: bytes) -> None:
        self.sock.sendto(raw, self.address)

    def recv(self, timeout: float | None = None) -> bytes | None:
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(4096)
            return data
        except TimeoutError:
            return None

    def ask(self, raw: bytes, timeout: float | None = None) -> bytes | None:
        self.send(raw)
        return self.recv(timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reply_code(raw: bytes | None) -> int | None:
    return None if raw is None else struct.unpack_from("!B", raw)[0]


SECRET = b"s3cret-nas"
PASSWORD = "Pass-2026"


def build_world(**nas_fields) -> dict:
    """A tenant with a NAS at 127.0.0.1 (secret :data:`SECRET`), packages and one
    customer per case, created through the services. Returns name -> object."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from ispcore.accounts import services as accounts
    from ispcore.accounts.models import User
    from ispcore.accounts.roles import Role
    from ispcore.catalog import services as catalog
    from ispcore.subscribers import services as subscribers

    su = User.objects.filter(username="radius-super").first()
    if su is None:
        su = User(username="radius-super", role=Role.SUPER_ADMIN, is_staff=True, is_superuser=True)
        su.set_password("x-Radius-2026")
        su.save()
    tenant = accounts.create_tenant(actor=su, name="Radius ISP", slug="radius-isp")
    root = tenant.root_node
    w: dict = {"super": su, "tenant": tenant, "root": root}
    fields = {"require_message_authenticator": True, **nas_fields}
    w["nas"] = subscribers.create_nas(actor=su, tenant=tenant, name="NAS 1", ip_address="127.0.0.1",
                                      secret=SECRET.decode(), **fields)
    mk = catalog.create_package
    w["pkg_ppp"] = mk(actor=su, tenant=tenant, name="PPP 10M", billing_mode="monthly", price=Decimal("800"),
                      upload_kbps=5120, download_kbps=10240, customer_types=["pppoe", "static"])
    w["pkg_burst"] = mk(actor=su, tenant=tenant, name="Burst", billing_mode="monthly", price=Decimal("900"),
                        upload_kbps=2048, download_kbps=5120, burst_upload_kbps=4096, burst_download_kbps=8192,
                        burst_threshold_upload_kbps=1536, burst_threshold_download_kbps=3840, burst_time_seconds=16,
                        customer_types=["pppoe"])
    w["pkg_hot"] = mk(actor=su, tenant=tenant, name="WiFi 24h", billing_mode="prepaid_hours", validity=24,
                      price=Decimal("80"), upload_kbps=1024, download_kbps=2048, customer_types=["hotspot"])
    w["pkg_data"] = mk(actor=su, tenant=tenant, name="1 MB", billing_mode="prepaid_days", validity=30,
                       price=Decimal("10"), upload_kbps=1024, download_kbps=1024, data_quota_mb=1,
                       customer_types=["pppoe"])
    w["pkg_time"] = mk(actor=su, tenant=tenant, name="10 min", billing_mode="prepaid_days", validity=30,
                       price=Decimal("10"), upload_kbps=1024, download_kbps=1024, time_quota_minutes=10,
                       customer_types=["pppoe"])
    w["pkg_other"] = mk(actor=su, tenant=tenant, name="Cable", billing_mode="monthly", price=Decimal("300"),
                        customer_types=["other"])
    now = timezone.now()
    month = now + timedelta(days=30)

    def customer(name, ctype="pppoe", package="pkg_ppp", **extra):
        extra.setdefault("expires_at", month)
        w[name] = subscribers.create_customer(
            actor=su, tenant=tenant, node=root, username=name, password=PASSWORD, customer_type=ctype,
            full_name=name.title(), mobile="+8801712345678", package=w[package] if package else None, **extra)
        return w[name]

    try:
        from ipam import services as ipam
    except ImportError:  # no IPAM in this deployment: static addresses are free-form
        ipam = None
    if ipam is not None and hasattr(ipam, "create_prefix"):
        ipam.create_prefix(actor=su, tenant=tenant, network="10.9.8.0/24", role="customer_static")

    customer("alice")
    customer("burst", package="pkg_burst")
    customer("static1", ctype="static", static_ip="10.9.8.7")
    customer("hot1", ctype="hotspot", package="pkg_hot", expires_at=now + timedelta(hours=2))
    customer("expired1", status="expired", expires_at=now - timedelta(days=1))
    customer("lapsed", expires_at=now - timedelta(minutes=5))
    customer("suspended1", status="suspended")
    customer("disabled1", status="disabled")
    customer("nopkg", package=None)
    customer("cable", ctype="other", package="pkg_other")
    customer("quota_data", package="pkg_data")
    customer("quota_time", package="pkg_time")
    customer("mac1", mac_address="AA:BB:CC:DD:EE:01")
    customer("dual", simultaneous_use=2)
    customer("forever", expires_at=None)
    return w


@contextlib.contextmanager
def table_locked(table: str, timeout: float = 20.0):
    """Hold ``LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE`` from another connection (a
    thread of its own) for the duration of the block: whatever the server writes to that
    table waits, as when the database is slow or a long transaction holds the table."""
    from django.db import connection, connections, transaction

    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(table)} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(timeout)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold, name=f"lock-{table}")
    holder.start()
    try:
        if not locked.wait(5):
            raise RuntimeError(f"could not lock {table}")
        yield
    finally:
        release.set()
        holder.join(timeout)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
