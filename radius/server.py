"""The RADIUS server: asyncio UDP on the auth and accounting ports.

Per datagram, on the event loop thread, without a database round trip:

1. the source address picks the NAS from the snapshot (unknown: drop);
2. a retransmission (same source address and port, identifier and
   authenticator, RFC 5080 section 2.2.2) gets the cached reply, or nothing
   while the first copy is still being answered. The cache is two
   generations of compact ``bytes -> reply`` dicts rotated every
   ``dedup_ttl`` seconds, so an entry lives between one and two
   ``dedup_ttl`` (the NAS retransmit window); at most ``dedup_max`` entries
   are kept (a flood rotates early);
3. one decode (:mod:`radius.packet`); malformed: drop;
4. Message-Authenticator checked when present, required when the NAS is
   marked so (and for Status-Server); Accounting-Request authenticators
   checked; failures dropped and counted, never answered;
5. Access-Request: decision from the snapshot, Access-Accept at once,
   Access-Reject after ``reject_delay`` (a timer, nothing blocks);
   Accounting-Request: handed to the group-commit writer and answered from
   its commit callback; Status-Server (RFC 5997) answered on both ports.

Every reply to an Access-Request carries a Message-Authenticator as its
first attribute (BlastRADIUS hardening).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import socket
import struct
import time

from . import crypto
from .accounting import STATUS_TYPES, AccountingWriter, AcctRecord, session_unique_id
from .auth import REPLY_MESSAGE, decide, reject_attributes
from .dictionary import counter64
from .metrics import Metrics
from .packet import PacketError, decode, encode_attributes, request_message_authenticator_ok
from .snapshot import Snapshot

logger = logging.getLogger(__name__)

PROXY_STATE = 33
MESSAGE_AUTHENTICATOR = 80
EAP_MESSAGE = 79
_ZERO16 = bytes(16)
_MISSING = object()
_HEAD = struct.Struct("!BBH")
_DRAIN_CHUNK = 2000

# Accounting attribute numbers
NAS_IP_ADDRESS, FRAMED_IP_ADDRESS, CALLED, CALLING = 4, 8, 30, 31
ACCT_STATUS_TYPE, ACCT_DELAY_TIME, ACCT_INPUT_OCTETS, ACCT_OUTPUT_OCTETS = 40, 41, 42, 43
ACCT_SESSION_ID, ACCT_SESSION_TIME, ACCT_INPUT_PACKETS, ACCT_OUTPUT_PACKETS = 44, 46, 47, 48
ACCT_TERMINATE_CAUSE, ACCT_INPUT_GIGAWORDS, ACCT_OUTPUT_GIGAWORDS, EVENT_TIMESTAMP = 49, 52, 53, 55
ACCT_INTERIM_INTERVAL, NAS_PORT_ID = 85, 87
TERMINATE_CAUSES = {
    1: "User-Request", 2: "Lost-Carrier", 3: "Lost-Service", 4: "Idle-Timeout", 5: "Session-Timeout",
    6: "Admin-Reset", 7: "Admin-Reboot", 8: "Port-Error", 9: "NAS-Error", 10: "NAS-Request", 11: "NAS-Reboot",
    12: "Port-Unneeded", 13: "Port-Preempted", 14: "Port-Suspended", 15: "Service-Unavailable", 16: "Callback",
    17: "User-Error", 18: "Host-Request",
}


def build_reply(code: int, ident: int, request_authenticator: bytes, secret: bytes, attributes: bytes,
                *, message_authenticator: bool) -> bytes:
    """Encode and sign a reply; with ``message_authenticator`` it is the first attribute."""
    if message_authenticator:
        length = 20 + 18 + len(attributes)
        header = _HEAD.pack(code, ident, length)
        digest = hmac.new(secret, header + request_authenticator + b"\x50\x12" + _ZERO16 + attributes, "md5").digest()
        attributes = b"\x50\x12" + digest + attributes
    else:
        header = _HEAD.pack(code, ident, 20 + len(attributes))
    auth = hashlib.md5(header + request_authenticator + attributes + secret, usedforsecurity=False).digest()
    return header + auth + attributes


class _Endpoint:
    """One UDP socket of a worker, read straight from the event loop.

    asyncio's datagram transport reads one datagram per turn of the loop (a poll of
    every socket and a pass through the loop's machinery each). Here one readiness
    callback reads up to ``batch`` datagrams until the socket is empty, so when
    requests queue up (a reconnect storm, a burst after a stall) the loop's own cost
    is paid once per batch instead of once per request. Replies go out with a direct
    ``sendto``; if the socket's send buffer is ever full they wait in a queue sent
    when it drains (as asyncio's transport does)."""

    def __init__(self, server: RadiusServer, sock: socket.socket, kind: str, batch: int = 64) -> None:
        self.server = server
        self.sock = sock
        self.kind = kind
        self.batch = batch
        self.loop = asyncio.get_running_loop()
        self._pending: collections.deque = collections.deque()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom, handle, kind = self.sock.recvfrom, self.server.handle, self.kind
        for _ in range(self.batch):
            try:
                data, addr = recvfrom(4097)  # RADIUS allows 4096 octets: a longer one shows as such
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                logger.debug("UDP error: %s", exc)
                continue
            try:
                handle(data, addr, self, kind)
            except Exception:  # one bad datagram must never stop the server
                self.server.metrics.inc("drops{internal_error}")
                logger.exception("error handling a datagram from %s", addr)

    def sendto(self, data: bytes, addr) -> None:
        if not self._pending:
            try:
                self.sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._writable)
            except OSError as exc:
                logger.debug("UDP send to %s failed: %s", addr, exc)
                return
        self._pending.append((data, addr))

    def _writable(self) -> None:
        pending = self._pending
        while pending:
            data, addr = pending[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("UDP send to %s failed: %s", addr, exc)
            pending.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()


class RadiusServer:
    """One worker: both sockets, the snapshot and the accounting writer."""

    def __init__(
        self,
        snapshot: Snapshot,
        writer: AccountingWriter | None,
        metrics: Metrics | None = None,
        *,
        reject_delay: float = 1.0,
        dedup_ttl: float = 10.0,
        auth_log: str = "all",
        dedup_max: int = 200_000,
        auth_log_writer=None,
    ) -> None:
        self.snapshot = snapshot
        self.writer = writer
        #: :class:`radius.authlog.AuthLogWriter` (None: decisions are not logged)
        self.auth_log_writer = auth_log_writer
        self.metrics = metrics or Metrics()
        self.reject_delay = reject_delay
        self.dedup_ttl = dedup_ttl
        self.dedup_max = dedup_max
        self.auth_log = auth_log
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transports: list[_Endpoint] = []
        self.ports: dict[str, int] = {}
        # duplicate cache, two generations: key -> reply bytes (None while being answered)
        self._dedup: dict[bytes, bytes | None] = {}
        self._dedup_old: dict[bytes, bytes | None] = {}
        self._dedup_rotated = time.monotonic()
        self._sweeper: asyncio.TimerHandle | None = None

    # -- sockets ---------------------------------------------------------

    @staticmethod
    def make_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        except OSError:
            pass
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    async def start(self, host: str, auth_port: int, acct_port: int, reuse_port: bool = True) -> None:
        self.loop = asyncio.get_running_loop()
        for kind, port in (("auth", auth_port), ("acct", acct_port)):
            sock = self.make_socket(host, port, reuse_port)
            self.transports.append(_Endpoint(self, sock, kind))
            self.ports[kind] = sock.getsockname()[1]
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for transport in self.transports:
            transport.close()
        self.transports.clear()

    def _rotate(self) -> None:
        expired = self._dedup_old
        self._dedup_old = self._dedup
        self._dedup = {}
        self._dedup_rotated = time.monotonic()
        if len(expired) > _DRAIN_CHUNK and self.loop is not None:
            # Freeing 100,000 entries at once holds the interpreter for milliseconds,
            # a latency spike for every request queued meanwhile: free them in
            # chunks between datagrams instead.
            self.loop.call_soon(self._drain, expired)

    def _drain(self, expired: dict) -> None:
        pop = expired.popitem
        for _ in range(min(_DRAIN_CHUNK, len(expired))):
            pop()
        if expired:
            assert self.loop is not None
            self.loop.call_soon(self._drain, expired)

    def dedup_size(self) -> int:
        return len(self._dedup) + len(self._dedup_old)

    def _sweep(self) -> None:
        if time.monotonic() - self._dedup_rotated >= self.dedup_ttl:
            self._rotate()
        assert self.loop is not None
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    # -- the hot path ----------------------------------------------------

    def handle(self, data: bytes, addr, transport, kind: str) -> None:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.inc("requests")
        nas = self.snapshot.nases.get(addr[0])
        if nas is None:
            metrics.inc("drops{unknown_nas}")
            return
        if len(data) < 20:
            metrics.inc("drops{malformed}")
            return
        # compact key: authenticator, identifier, source port and address
        key = data[4:20] + data[1:2] + addr[1].to_bytes(2, "big") + addr[0].encode()
        cached = self._dedup.get(key, _MISSING)
        if cached is _MISSING:
            cached = self._dedup_old.get(key, _MISSING)
        if cached is not _MISSING:
            metrics.inc("duplicates")
            if cached is not None:
                transport.sendto(cached, addr)
            return
        try:
            request = decode(data)
        except PacketError:
            metrics.inc("drops{malformed}")
            return
        code = request.code
        secret = nas.secret
        if code == crypto.STATUS_SERVER:
            self._status_server(request, nas, addr, transport, kind)
            return
        if kind == "auth" and code == crypto.ACCESS_REQUEST:
            if MESSAGE_AUTHENTICATOR in request.attributes:
                if not request_message_authenticator_ok(request, secret):
                    metrics.inc("drops{bad_message_authenticator}")
                    return
            elif nas.require_message_authenticator or EAP_MESSAGE in request.attributes:
                metrics.inc("drops{missing_message_authenticator}")
                return
            self._remember(key)
            self._access_request(request, nas, addr, transport, key, started)
        elif kind == "acct" and code == crypto.ACCOUNTING_REQUEST:
            if not crypto.verify_accounting_request_authenticator(request.raw, secret):
                metrics.inc("drops{bad_authenticator}")
                return
            if MESSAGE_AUTHENTICATOR in request.attributes and not crypto.verify_message_authenticator(
                request.raw, secret
            ):
                metrics.inc("drops{bad_message_authenticator}")
                return
            if self.writer is None:
                metrics.inc("drops{no_writer}")
                return
            self._remember(key)
            self._accounting_request(request, nas, addr, transport, key, started)
        else:
            metrics.inc("drops{unexpected_code}")

    def _remember(self, key) -> None:
        dedup = self._dedup
        if len(dedup) * 2 >= self.dedup_max:  # bound memory under a flood: rotate early
            self._rotate()
            dedup = self._dedup
        dedup[key] = None

    def _send(self, transport, addr, key, reply: bytes) -> None:
        if key in self._dedup:
            self._dedup[key] = reply
        elif key in self._dedup_old:
            self._dedup_old[key] = reply
        try:
            transport.sendto(reply, addr)
        except OSError:
            self.metrics.inc("send_errors")

    @staticmethod
    def _proxy_state(request) -> bytes:
        values = request.attributes.get(PROXY_STATE)
        if not values:
            return b""
        return encode_attributes([(PROXY_STATE, v) for v in values])

    def _status_server(self, request, nas, addr, transport, kind) -> None:
        verified = crypto.verify_message_authenticator(request.raw, nas.secret)
        if not verified:  # RFC 5997: Status-Server must carry a valid Message-Authenticator
            self.metrics.inc("drops{bad_message_authenticator}" if verified is False else "drops{missing_message_authenticator}")
            return
        self.metrics.inc("status_server")
        code = crypto.ACCESS_ACCEPT if kind == "auth" else crypto.ACCOUNTING_RESPONSE
        attrs = encode_attributes([(REPLY_MESSAGE, b"RADIUS server up")])
        reply = build_reply(code, request.ident, request.authenticator, nas.secret, attrs, message_authenticator=True)
        transport.sendto(reply, addr)

    def _access_request(self, request, nas, addr, transport, key, started: float) -> None:
        username_raw = request.get(1)
        username = username_raw.decode("utf-8", "replace") if username_raw else ""
        customer = self.snapshot.customers.get((nas.tenant_id, username))
        now = time.time()
        decision = decide(request, nas, customer, now)
        metrics = self.metrics
        if decision.accepted:
            code = crypto.ACCESS_ACCEPT
            attrs = decision.attributes
            metrics.inc("accepts")
        else:
            code = crypto.ACCESS_REJECT
            attrs = reject_attributes(decision)
            metrics.inc(f"rejects{{{decision.reason}}}")
        body = encode_attributes(attrs) + self._proxy_state(request)
        reply = build_reply(code, request.ident, request.authenticator, nas.secret, body, message_authenticator=True)
        log = self.auth_log_writer
        if log is not None and (self.auth_log == "all" or (self.auth_log == "rejects" and not decision.accepted)):
            log.log((nas.tenant_id, nas.ip_address, username, customer.id if customer else None,
                     decision.accepted, decision.reason, decision.method, request.text(31) or "", now))
        if decision.accepted or self.reject_delay <= 0:
            self._send(transport, addr, key, reply)
        else:
            assert self.loop is not None
            self.loop.call_later(self.reject_delay, self._send, transport, addr, key, reply)
        metrics.observe("auth_latency_seconds", time.perf_counter() - started)

    def _accounting_request(self, request, nas, addr, transport, key, started: float) -> None:
        status = STATUS_TYPES.get(request.integer(ACCT_STATUS_TYPE) or 0)
        if status is None:
            # Unknown status types (e.g. Tunnel-*) are acknowledged and not stored.
            reply = build_reply(crypto.ACCOUNTING_RESPONSE, request.ident, request.authenticator, nas.secret,
                                self._proxy_state(request), message_authenticator=False)
            self._send(transport, addr, key, reply)
            self.metrics.inc("acct_ignored")
            return
        now = time.time()
        event = request.integer(EVENT_TIMESTAMP)
        delay = request.integer(ACCT_DELAY_TIME) or 0
        event_ts = float(event) if event else now - delay
        if event_ts > now + 300 or event_ts < now - 86400 * 7:
            event_ts = now - delay  # a NAS with a wrong clock: trust our own
        username = request.text(1) or ""
        acct_session_id = request.text(ACCT_SESSION_ID) or ""
        customer = self.snapshot.customers.get((nas.tenant_id, username))
        try:
            input_octets = counter64(request.integer(ACCT_INPUT_OCTETS), request.integer(ACCT_INPUT_GIGAWORDS))
            output_octets = counter64(request.integer(ACCT_OUTPUT_OCTETS), request.integer(ACCT_OUTPUT_GIGAWORDS))
        except ValueError:
            input_octets = output_octets = 0
        cause = request.integer(ACCT_TERMINATE_CAUSE)
        record = AcctRecord(
            status=status,
            tenant_id=nas.tenant_id,
            nas_id=nas.id,
            event_ts=event_ts,
            customer_id=customer.id if customer else None,
            unique_id=session_unique_id(nas.id, acct_session_id, username),
            acct_session_id=acct_session_id,
            username=username,
            nas_ip_address=request.ipv4(NAS_IP_ADDRESS) or nas.ip_address,
            nas_port_id=request.text(NAS_PORT_ID) or "",
            framed_ip_address=request.ipv4(FRAMED_IP_ADDRESS),
            calling_station_id=request.text(CALLING) or "",
            called_station_id=request.text(CALLED) or "",
            session_time=request.integer(ACCT_SESSION_TIME) or 0,
            input_octets=input_octets,
            output_octets=output_octets,
            input_packets=request.integer(ACCT_INPUT_PACKETS) or 0,
            output_packets=request.integer(ACCT_OUTPUT_PACKETS) or 0,
            interim_interval=request.integer(ACCT_INTERIM_INTERVAL) or 0,
            terminate_cause=TERMINATE_CAUSES.get(cause, str(cause)) if cause else "",
        )
        self.metrics.inc(f"acct{{{status}}}")
        reply = build_reply(crypto.ACCOUNTING_RESPONSE, request.ident, request.authenticator, nas.secret,
                            self._proxy_state(request), message_authenticator=False)
        assert self.writer is not None

        def committed(ok: bool) -> None:
            if ok:
                self._acct_done(transport, addr, key, reply, started)

        self.writer.submit(record, committed, self.loop)

    def _acct_done(self, transport, addr, key, reply, started) -> None:
        self._send(transport, addr, key, reply)
        self.metrics.observe("acct_latency_seconds", time.perf_counter() - started)
