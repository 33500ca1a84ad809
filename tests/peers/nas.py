"""A NAS simulator for RFC 5176 Disconnect and CoA requests.

It plays the router side of dynamic authorization so the code that sends
Disconnect-Request/CoA-Request can be tested without a MikroTik:

* a UDP server on 127.0.0.1 (port 0 = any free port, see :attr:`NasSimulator.port`),
  run in a background thread between :meth:`~NasSimulator.start` and
  :meth:`~NasSimulator.stop` (or as a context manager);
* one shared secret per simulator; requests whose Request Authenticator (or
  Message-Authenticator) does not verify are recorded and silently dropped,
  as RFC 5176 section 3.5 requires;
* a set of sessions (User-Name, Acct-Session-Id, Framed-IP-Address);
  Disconnect-Request removes the sessions it identifies and is answered with
  Disconnect-ACK, CoA-Request records its attributes on the sessions and is
  answered with CoA-ACK; a request identifying no session gets a NAK with
  Error-Cause 503 Session-Context-Not-Found;
* like RouterOS, a request must carry User-Name plus Acct-Session-Id and/or
  Framed-IP-Address (``strict_identification``), else NAK with Error-Cause
  402 Missing-Attribute;
* a retransmission (same source, identifier and authenticator) of an
  answered request gets the cached reply again, so a lost ACK does not turn
  into a NAK;
* every received request is recorded with its decoded attributes.

Switches (plain attributes, change them at any time): :attr:`silent`,
:attr:`always_nak`, :attr:`answer_after_retransmissions`,
:attr:`bad_authenticator`, :attr:`reply_message_authenticator`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pyrad.dictionary import Dictionary
from pyrad.packet import CoAPacket, PacketError

from radius import crypto
from radius.dictionary import load_dictionary

__all__ = ["NasSimulator", "ReceivedRequest", "Session"]

logger = logging.getLogger(__name__)

ERROR_MISSING_ATTRIBUTE = 402
ERROR_ADMINISTRATIVELY_PROHIBITED = 501
ERROR_SESSION_CONTEXT_NOT_FOUND = 503

_REPLY_CODES = {
    crypto.DISCONNECT_REQUEST: (crypto.DISCONNECT_ACK, crypto.DISCONNECT_NAK),
    crypto.COA_REQUEST: (crypto.COA_ACK, crypto.COA_NAK),
}
_IDENTIFYING = ("User-Name", "Acct-Session-Id", "Framed-IP-Address")
_NOT_APPLIED = frozenset(_IDENTIFYING) | {"Message-Authenticator", "Event-Timestamp", "NAS-IP-Address"}


@dataclass
class Session:
    """A session the simulated NAS holds."""

    user_name: str
    acct_session_id: str
    framed_ip_address: str | None = None
    #: Attributes applied by CoA-Requests, by name (latest values win).
    attributes: dict[str, list[Any]] = field(default_factory=dict)

    def matches(self, identifiers: dict[str, str]) -> bool:
        """Whether every identifying attribute of a request matches this session."""
        own = {
            "User-Name": self.user_name,
            "Acct-Session-Id": self.acct_session_id,
            "Framed-IP-Address": self.framed_ip_address,
        }
        return all(own[name] == value for name, value in identifiers.items())


@dataclass(frozen=True)
class ReceivedRequest:
    """One datagram the simulator received."""

    code: int
    identifier: int
    source: tuple[str, int]
    #: Decoded attributes by name (undefined ones by ``str(code)``).
    attributes: dict[str, list[Any]]
    raw: bytes
    #: Request Authenticator (and Message-Authenticator, if any) verified.
    authentic: bool
    #: How many times this request (source, identifier, authenticator) had
    #: been received, including this time.
    receipt: int
    #: Reply code sent for this datagram, None when none was sent.
    reply_code: int | None = None

    @property
    def is_retransmission(self) -> bool:
        return self.receipt > 1

    def get(self, name: str) -> Any:
        """First value of an attribute, or None."""
        values = self.attributes.get(name)
        return values[0] if values else None


class NasSimulator:
    """Simulated NAS answering RFC 5176 Disconnect and CoA requests."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        dictionary: Dictionary | None = None,
        strict_identification: bool = True,
    ) -> None:
        #: Shared secret; a random one unless given.
        self.secret: bytes = secret if secret is not None else secrets.token_hex(12).encode("ascii")
        self.host = host
        self.dictionary = dictionary if dictionary is not None else load_dictionary()
        self.strict_identification = strict_identification
        #: Record requests but never answer.
        self.silent = False
        #: Answer every authentic request with a NAK carrying :attr:`nak_error_cause`.
        self.always_nak = False
        self.nak_error_cause = ERROR_ADMINISTRATIVELY_PROHIBITED
        #: Ignore the first N copies of each request; answer the (N+1)-th.
        self.answer_after_retransmissions = 0
        #: Send replies whose Response Authenticator is wrong.
        self.bad_authenticator = False
        #: Add a Message-Authenticator to replies.
        self.reply_message_authenticator = False

        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._sessions: list[Session] = []
        self._requests: list[ReceivedRequest] = []
        self._receipts: Counter[tuple[tuple[str, int], int, bytes]] = Counter()
        self._reply_cache: dict[tuple[tuple[str, int], int, bytes], bytes] = {}

    # -- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP port the simulator listens on (after :meth:`start`)."""
        if self._sock is None:
            raise RuntimeError("the NAS simulator is not started")
        return self._sock.getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> NasSimulator:
        """Bind the socket and start answering in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the NAS simulator is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self._requested_port))
        sock.settimeout(0.05)
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"nas-simulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the socket. Safe to call twice."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> NasSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- sessions ----------------------------------------------------------

    def add_session(self, user_name: str, acct_session_id: str, framed_ip_address: str | None = None) -> Session:
        """Add a session the NAS holds and return it."""
        session = Session(user_name, acct_session_id, framed_ip_address)
        with self._lock:
            self._sessions.append(session)
        return session

    @property
    def sessions(self) -> list[Session]:
        """Snapshot of the current sessions."""
        with self._lock:
            return list(self._sessions)

    def has_session(self, acct_session_id: str) -> bool:
        with self._lock:
            return any(s.acct_session_id == acct_session_id for s in self._sessions)

    # -- recorded requests -------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Snapshot of every datagram received, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 2.0) -> list[ReceivedRequest]:
        """Wait until at least ``count`` requests were received; return them all.

        :raises TimeoutError: if fewer arrived in time.
        """
        with self._received:
            if not self._received.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, got {len(self._requests)}")
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- protocol ----------------------------------------------------------

    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while not self._stopping.is_set():
            try:
                data, source = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                reply = self._handle(data, source)
            except Exception:  # keep serving: a test peer must not die on odd input
                logger.exception("NAS simulator failed on a datagram from %s", source)
                continue
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, source)

    def _decode(self, data: bytes) -> CoAPacket:
        return CoAPacket(packet=data, secret=self.secret, dict=self.dictionary)

    def _attributes(self, packet: CoAPacket) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = {}
        for key in packet.keys():
            name = key if isinstance(key, str) else str(key)
            try:
                result[name] = list(packet[key])
            except (KeyError, ValueError, TypeError, PacketError):
                # a value pyrad cannot decode: keep the raw octets
                result[name] = list(OrderedDict.__getitem__(packet, packet._EncodeKey(key)))
        return result

    def _record(self, request: ReceivedRequest) -> None:
        with self._received:
            self._requests.append(request)
            self._received.notify_all()

    def _handle(self, data: bytes, source: tuple[str, int]) -> bytes | None:
        try:
            packet = self._decode(data)
        except PacketError:
            return None
        attributes = self._attributes(packet)
        authentic = crypto.verify_coa_request_authenticator(data, self.secret)
        if authentic and crypto.verify_message_authenticator(data, self.secret) is False:
            authentic = False
        key = (source, packet.id, packet.authenticator)
        with self._lock:
            self._receipts[key] += 1
            receipt = self._receipts[key]

        def record(reply_code: int | None) -> None:
            self._record(
                ReceivedRequest(packet.code, packet.id, source, attributes, data, authentic, receipt, reply_code)
            )

        if not authentic or packet.code not in _REPLY_CODES or self.silent:
            record(None)
            return None
        if receipt <= self.answer_after_retransmissions:
            record(None)
            return None
        with self._lock:
            reply = self._reply_cache.get(key)
            if reply is None:
                reply = self._answer(packet, attributes)
                self._reply_cache[key] = reply
        record(reply[0])
        return reply

    def _answer(self, packet: CoAPacket, attributes: dict[str, list[Any]]) -> bytes:
        """Apply a request to the sessions and encode the reply (lock held)."""
        ack, nak = _REPLY_CODES[packet.code]
        error_cause: int | None = None
        if self.always_nak:
            error_cause = self.nak_error_cause
        else:
            identifiers = {name: str(attributes[name][0]) for name in _IDENTIFYING if attributes.get(name)}
            strict_ok = "User-Name" in identifiers and (
                "Acct-Session-Id" in identifiers or "Framed-IP-Address" in identifiers
            )
            if not identifiers or (self.strict_identification and not strict_ok):
                error_cause = ERROR_MISSING_ATTRIBUTE
            else:
                matched = [s for s in self._sessions if s.matches(identifiers)]
                if not matched:
                    error_cause = ERROR_SESSION_CONTEXT_NOT_FOUND
                elif packet.code == crypto.DISCONNECT_REQUEST:
                    removed = {id(s) for s in matched}
                    self._sessions = [s for s in self._sessions if id(s) not in removed]
                else:
                    changes = {k: v for k, v in attributes.items() if k not in _NOT_APPLIED}
                    for session in matched:
                        session.attributes.update(changes)

        reply = packet.CreateReply()
        if error_cause is None:
            reply.code = ack
        else:
            reply.code = nak
            reply["Error-Cause"] = error_cause
        if self.reply_message_authenticator:
            reply.message_authenticator = True
        raw = reply.ReplyPacket()
        if self.bad_authenticator:
            raw = raw[:4] + bytes(b ^ 0xFF for b in raw[4:20]) + raw[20:]
        return raw
