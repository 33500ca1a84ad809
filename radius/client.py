"""RFC 5176 client: Disconnect-Request and CoA-Request to a NAS.

One request = one UDP socket, the same datagram retransmitted (same
identifier and authenticator, so the NAS can recognise the copy) up to
``retries`` times, ``timeout`` seconds apart. A reply counts only when its
identifier matches and its Response Authenticator verifies with the NAS's
secret; anything else is ignored (and logged), never trusted.

Results: ``ack``, ``nak`` (with Error-Cause), ``timeout`` (retryable: the NAS
did not answer) or ``error`` (permanent: e.g. the request cannot be encoded
or the address is invalid).
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass, field

from . import crypto
from .packet import AttrKey, PacketError, decode, encode, encode_attributes, u32

logger = logging.getLogger(__name__)

ERROR_CAUSE = 101
EVENT_TIMESTAMP = 55

_ACKS = {crypto.DISCONNECT_REQUEST: crypto.DISCONNECT_ACK, crypto.COA_REQUEST: crypto.COA_ACK}
_NAKS = {crypto.DISCONNECT_REQUEST: crypto.DISCONNECT_NAK, crypto.COA_REQUEST: crypto.COA_NAK}


@dataclass
class DynAuthResult:
    result: str
    attempts: int
    error_cause: int | None = None
    detail: str = ""
    reply_attributes: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "ack"


def build_request(code: int, secret: bytes, attributes: list[tuple[AttrKey, bytes]], ident: int | None = None) -> bytes:
    """A signed Disconnect/CoA request with Event-Timestamp and Message-Authenticator."""
    ident = secrets.randbelow(256) if ident is None else ident
    attrs = [*attributes, (EVENT_TIMESTAMP, u32(int(time.time())))]
    raw = encode(code, ident, bytes(16), encode_attributes(attrs))
    raw = crypto.add_message_authenticator(raw, secret)
    return crypto.sign_request(raw, secret)


def send_request(
    host: str,
    port: int,
    secret: bytes,
    code: int,
    attributes: list[tuple[AttrKey, bytes]],
    *,
    timeout: float = 2.0,
    retries: int = 3,
) -> DynAuthResult:
    """Send one Disconnect-Request or CoA-Request and wait for its ACK/NAK."""
    if code not in _ACKS:
        raise ValueError("code must be Disconnect-Request or CoA-Request")
    try:
        raw = build_request(code, secret, attributes)
    except ValueError as exc:
        return DynAuthResult("error", 0, detail=str(exc))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    attempts = 0
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        return DynAuthResult("error", 0, detail=str(exc))
    with sock:
        for _ in range(max(1, retries)):
            attempts += 1
            try:
                sock.sendto(raw, (host, port))
            except OSError as exc:
                return DynAuthResult("error", attempts, detail=str(exc))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(4096)
                except TimeoutError:
                    break
                except OSError as exc:  # e.g. ICMP port unreachable surfaced on Linux
                    logger.debug("dynamic authorization to %s:%s: %s", host, port, exc)
                    break
                result = _match_reply(data, raw, secret, code, attempts)
                if result is not None:
                    return result
    return DynAuthResult("timeout", attempts, detail=f"no valid reply from {host}:{port}")


def _match_reply(data: bytes, request: bytes, secret: bytes, code: int, attempts: int) -> DynAuthResult | None:
    try:
        reply = decode(data)
    except PacketError:
        logger.warning("malformed dynamic authorization reply ignored")
        return None
    if reply.ident != request[1] or not crypto.verify_response_authenticator(data, request[4:20], secret):
        logger.warning("dynamic authorization reply with wrong identifier or authenticator ignored")
        return None
    if crypto.verify_message_authenticator(data, secret, request_authenticator=request[4:20]) is False:
        logger.warning("dynamic authorization reply with a bad Message-Authenticator ignored")
        return None
    if reply.code == _ACKS[code]:
        return DynAuthResult("ack", attempts)
    if reply.code == _NAKS[code]:
        return DynAuthResult("nak", attempts, error_cause=reply.integer(ERROR_CAUSE))
    logger.warning("unexpected reply code %s to dynamic authorization", reply.code)
    return None
