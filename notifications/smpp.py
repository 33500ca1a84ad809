"""SMPP 3.4 client for the SMS module (protocol layer only, no Django models).

Why our own codec and I/O instead of smpplib
-------------------------------------------
smpplib 2.2.4 is installed, but its threading and error model fight what a
bulk sender needs, so it is not used here:

* its listener (``read_once``) raises out of the loop on the first response
  with an error status unless an error handler is installed, and then still
  passes the same error ``submit_sm_resp`` to the "sent" handler;
* it has no window, no sequence-number tracking of outstanding submits, no
  reconnect, and one socket timeout serves both reads and writes, so an idle
  read timeout and a stalled write cannot be told apart;
* an unknown command id raises in its parser, it does not answer ``unbind``
  from the SMSC, and its client state is mutated by the reader thread while
  ``send_pdu`` checks it from the sending thread without a lock;
* it ships its own message splitter, which is exactly what must never be used
  (we segment with :mod:`notifications.encoding`).

The SMPP subset a transceiver needs is small (a 16-byte header, C-octet
strings and TLVs), so a compact codec plus one I/O thread per bind is less
code than working around those points.

Threading model
---------------
One :class:`SMPPClient` is one bind (one TCP connection at a time). A daemon
I/O thread owns connecting, binding (``bind_transceiver``), reading, keepalive
and reconnecting with exponential backoff. ``submit`` runs in the caller's
thread: it waits for a free window slot and a rate token, then writes the
``submit_sm`` itself (writes are serialised by a lock; ``TCP_NODELAY`` is set).
Callbacks run in the I/O thread and must be quick (``on_submit_resp`` for a part that was never
written runs in the submitting thread).

Guarantees
----------
* At most ``window`` ``submit_sm`` are outstanding (written, no response yet)
  at any time, and at most ``burst + max_rate * T`` are written in any
  interval of ``T`` seconds when ``max_rate`` is set.
* Every part given to :meth:`SMPPClient.submit` gets exactly one
  :class:`SubmitResult`: ``on_submit_resp`` is called once, then its future is
  resolved (never with an exception). ``UNKNOWN`` means it was written but no
  response came (connection lost / response timeout): the SMSC may have
  accepted it, so a blind retry may send it twice.
* Error responses, unknown or malformed PDUs and exceptions raised by
  callbacks are logged and never stop the I/O thread; only a broken framing
  (impossible ``command_length``) closes the connection, which is then
  re-established with backoff.
* Delivery receipts are surfaced as they arrive, including one that arrives
  before the ``submit_sm_resp`` of its message; matching is the caller's job
  (use ``message_key``, normalised per provider with
  :func:`normalise_message_id`).
* If ``on_receipt`` / ``on_incoming`` raises, the ``deliver_sm`` is answered
  with ``ESME_RX_T_APPN`` (temporary) so the SMSC redelivers it later.
* ``on_receipt`` may instead return a :class:`~concurrent.futures.Future`: the
  ``deliver_sm_resp`` is then written when it resolves (``ESME_ROK``, or
  ``ESME_RX_T_APPN`` if it failed), from the thread that resolves it, and the I/O
  thread goes on reading meanwhile (group commit of receipts: acknowledged only
  once stored, without a database round trip per receipt on the I/O thread).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from notifications.encoding import (
    ESM_CLASS_UDHI,
    concat_udh,
    data_coding,
    decode_gsm7,
    decode_ucs2,
    encode_part,
    segment,
)

__all__ = [
    "ESME_RMSGQFUL",
    "ESME_ROK",
    "ESME_RTHROTTLED",
    "TEMPORARY_STATUSES",
    "Backoff",
    "BindError",
    "DeliveryReceipt",
    "IncomingMessage",
    "Outcome",
    "Pdu",
    "PduError",
    "SMPPClient",
    "SMPPConfig",
    "SubmitResult",
    "TokenBucket",
    "ShortMessage",
    "classify_status",
    "decode_data_sm",
    "decode_sm",
    "decode_tlvs",
    "destination_address",
    "encode_bind",
    "encode_pdu",
    "encode_submit_sm",
    "encode_tlv",
    "normalise_message_id",
    "parse_receipt",
    "parse_udh",
    "source_address",
    "split_pdus",
]

logger = logging.getLogger(__name__)

# -- protocol constants -------------------------------------------------------

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
QUERY_SM: Final = 0x00000003
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103
DATA_SM_RESP: Final = 0x80000103

RESPONSE_BIT: Final = 0x80000000

COMMAND_NAMES: Final[Mapping[int, str]] = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_RECEIVER_RESP: "bind_receiver_resp",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSMITTER_RESP: "bind_transmitter_resp",
    QUERY_SM: "query_sm",
    SUBMIT_SM: "submit_sm",
    SUBMIT_SM_RESP: "submit_sm_resp",
    DELIVER_SM: "deliver_sm",
    DELIVER_SM_RESP: "deliver_sm_resp",
    UNBIND: "unbind",
    UNBIND_RESP: "unbind_resp",
    BIND_TRANSCEIVER: "bind_transceiver",
    BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    ENQUIRE_LINK_RESP: "enquire_link_resp",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
    DATA_SM_RESP: "data_sm_resp",
}

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RSYSERR: Final = 0x08
ESME_RINVDSTADR: Final = 0x0B
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64

#: Statuses after which the same submit may succeed later (retry, maybe elsewhere).
TEMPORARY_STATUSES: Final = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})

TAG_RECEIPTED_MESSAGE_ID: Final = 0x001E
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F
TAG_NETWORK_ERROR_CODE: Final = 0x0423
TAG_MESSAGE_PAYLOAD: Final = 0x0424
TAG_MESSAGE_STATE: Final = 0x0427

INTERFACE_VERSION: Final = 0x34
HEADER: Final = struct.Struct(">IIII")
HEADER_SIZE: Final = 16
#: Largest PDU accepted; message_payload may hold up to 64 KiB.
MAX_PDU_LENGTH: Final = 70_000
MAX_SEQUENCE: Final = 0x7FFFFFFF

#: esm_class message-type bits (2-5) that mean "this deliver_sm is a receipt".
_RECEIPT_TYPES: Final = frozenset({0x04, 0x20})  # SMSC delivery receipt, intermediate notification

MESSAGE_STATES: Final[Mapping[int, str]] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
_STAT_ALIASES: Final[Mapping[str, str]] = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}


# -- PDU codec -----------------------------------------------------------------


class PduError(ValueError):
    """Bytes that are not a valid SMPP PDU (or PDU body)."""


class Pdu(NamedTuple):
    """One decoded PDU header plus its raw body."""

    command_id: int
    command_status: int
    sequence: int
    body: bytes

    @property
    def name(self) -> str:
        """Command name for logs (hex id when unknown)."""
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08X}")


def encode_pdu(command_id: int, sequence: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    """Header + body; ``command_length`` is computed."""
    return HEADER.pack(HEADER_SIZE + len(body), command_id, status, sequence) + body


def split_pdus(buffer: bytearray) -> list[Pdu]:
    """Remove every complete PDU from the front of ``buffer`` and return them.

    An incomplete PDU stays in the buffer. Raises :class:`PduError` when a
    ``command_length`` is impossible (framing is lost; the connection must go).
    """
    pdus: list[Pdu] = []
    offset = 0
    size = len(buffer)
    while size - offset >= HEADER_SIZE:
        length, command_id, status, sequence = HEADER.unpack_from(buffer, offset)
        if length < HEADER_SIZE or length > MAX_PDU_LENGTH:
            raise PduError(f"impossible command_length {length}")
        if size - offset < length:
            break
        pdus.append(Pdu(command_id, status, sequence, bytes(buffer[offset + HEADER_SIZE : offset + length])))
        offset += length
    if offset:
        del buffer[:offset]
    return pdus


def _cstring(value: str | bytes, max_size: int, field_name: str) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if b"\x00" in raw:
        raise ValueError(f"{field_name} must not contain NUL")
    if len(raw) + 1 > max_size:
        raise ValueError(f"{field_name} is longer than {max_size - 1} octets")
    return raw + b"\x00"


def _read_cstring(body: bytes, offset: int, max_size: int, field_name: str, *, lenient_end: bool = False) -> tuple[str, int]:
    end = body.find(b"\x00", offset, offset + max_size)
    if end < 0:
        if lenient_end and len(body) - offset < max_size:
            return body[offset:].decode("latin-1"), len(body)
        raise PduError(f"{field_name}: no NUL terminator within {max_size} octets")
    return body[offset:end].decode("latin-1"), end + 1


def _read_byte(body: bytes, offset: int, field_name: str) -> tuple[int, int]:
    if offset >= len(body):
        raise PduError(f"body ends before {field_name}")
    return body[offset], offset + 1


def decode_tlvs(body: bytes, offset: int) -> dict[int, bytes]:
    """Optional parameters from ``offset`` to the end (the last of a repeated tag wins)."""
    tlvs: dict[int, bytes] = {}
    size = len(body)
    while offset < size:
        if size - offset < 4:
            raise PduError("truncated TLV header")
        tag, length = struct.unpack_from(">HH", body, offset)
        offset += 4
        if size - offset < length:
            raise PduError(f"TLV 0x{tag:04X} claims {length} octets, {size - offset} left")
        tlvs[tag] = body[offset : offset + length]
        offset += length
    return tlvs


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One optional parameter."""
    return struct.pack(">HH", tag, len(value)) + value


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """Decoded body of submit_sm / deliver_sm / data_sm.

    ``short_message`` holds ``message_payload`` when short_message is empty.
    """

    service_type: str
    source_ton: int
    source_npi: int
    source_addr: str
    dest_ton: int
    dest_npi: int
    destination_addr: str
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    replace_if_present_flag: int
    data_coding: int
    sm_default_msg_id: int
    short_message: bytes
    tlvs: dict[int, bytes]


def _read_sm_header(body: bytes, address_length: int) -> tuple[tuple, int]:
    """service_type, source and destination addresses and esm_class: the head that
    submit_sm, deliver_sm (addresses up to 21 octets) and data_sm (65) share."""
    service_type, o = _read_cstring(body, 0, 6, "service_type")
    source_ton, o = _read_byte(body, o, "source_addr_ton")
    source_npi, o = _read_byte(body, o, "source_addr_npi")
    source_addr, o = _read_cstring(body, o, address_length, "source_addr")
    dest_ton, o = _read_byte(body, o, "dest_addr_ton")
    dest_npi, o = _read_byte(body, o, "dest_addr_npi")
    destination_addr, o = _read_cstring(body, o, address_length, "destination_addr")
    esm_class, o = _read_byte(body, o, "esm_class")
    return (service_type, source_ton, source_npi, source_addr, dest_ton, dest_npi, destination_addr, esm_class), o


def decode_sm(body: bytes) -> ShortMessage:
    """Decode a submit_sm / deliver_sm body. Raises :class:`PduError`."""
    head, o = _read_sm_header(body, 21)
    protocol_id, o = _read_byte(body, o, "protocol_id")
    priority_flag, o = _read_byte(body, o, "priority_flag")
    schedule, o = _read_cstring(body, o, 17, "schedule_delivery_time")
    validity, o = _read_cstring(body, o, 17, "validity_period")
    registered_delivery, o = _read_byte(body, o, "registered_delivery")
    replace_flag, o = _read_byte(body, o, "replace_if_present_flag")
    coding, o = _read_byte(body, o, "data_coding")
    default_msg_id, o = _read_byte(body, o, "sm_default_msg_id")
    sm_length, o = _read_byte(body, o, "sm_length")
    if len(body) - o < sm_length:
        raise PduError(f"sm_length {sm_length} exceeds the body")
    short_message = body[o : o + sm_length]
    tlvs = decode_tlvs(body, o + sm_length)
    if not short_message and TAG_MESSAGE_PAYLOAD in tlvs:
        short_message = tlvs[TAG_MESSAGE_PAYLOAD]
    return ShortMessage(
        *head, protocol_id, priority_flag, schedule, validity, registered_delivery, replace_flag,
        coding, default_msg_id, short_message, tlvs,
    )


def decode_data_sm(body: bytes) -> ShortMessage:
    """Decode a data_sm body into the same shape as :func:`decode_sm`."""
    head, o = _read_sm_header(body, 65)
    registered_delivery, o = _read_byte(body, o, "registered_delivery")
    coding, o = _read_byte(body, o, "data_coding")
    tlvs = decode_tlvs(body, o)
    return ShortMessage(
        *head, 0, 0, "", "", registered_delivery, 0, coding, 0, tlvs.get(TAG_MESSAGE_PAYLOAD, b""), tlvs,
    )


def encode_submit_sm(
    *,
    source_addr: str,
    source_ton: int,
    source_npi: int,
    destination_addr: str,
    dest_ton: int,
    dest_npi: int,
    short_message: bytes,
    data_coding: int,
    esm_class: int = 0,
    registered_delivery: int = 1,
    service_type: str = "",
    validity_period: str = "",
) -> bytes:
    """submit_sm body (without header). ``short_message`` at most 254 octets."""
    if len(short_message) > 254:
        raise ValueError("short_message longer than 254 octets")
    return b"".join(
        (
            _cstring(service_type, 6, "service_type"),
            bytes((source_ton, source_npi)),
            _cstring(source_addr, 21, "source_addr"),
            bytes((dest_ton, dest_npi)),
            _cstring(destination_addr, 21, "destination_addr"),
            bytes((esm_class, 0, 0)),  # esm_class, protocol_id, priority_flag
            b"\x00",  # schedule_delivery_time: immediate
            _cstring(validity_period, 17, "validity_period"),
            bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
            short_message,
        )
    )


def encode_bind(system_id: str, password: str, system_type: str = "", address_range: str = "") -> bytes:
    """bind_* body with interface_version 3.4 and TON/NPI 0."""
    return b"".join(
        (
            _cstring(system_id, 16, "system_id"),
            _cstring(password, 9, "password"),
            _cstring(system_type, 13, "system_type"),
            bytes((INTERFACE_VERSION, 0, 0)),
            _cstring(address_range, 41, "address_range"),
        )
    )


def parse_udh(short_message: bytes) -> tuple[dict[int, bytes], bytes]:
    """Split a short_message with UDHI set into (IEs by IEI, payload).

    Raises :class:`PduError` when the UDH length overruns the message.
    """
    if not short_message:
        raise PduError("UDHI set but short_message is empty")
    udhl = short_message[0]
    if udhl + 1 > len(short_message):
        raise PduError(f"UDH length {udhl} overruns the message")
    udh = short_message[1 : 1 + udhl]
    ies: dict[int, bytes] = {}
    offset = 0
    while offset + 2 <= len(udh):
        iei, length = udh[offset], udh[offset + 1]
        ies[iei] = udh[offset + 2 : offset + 2 + length]
        offset += 2 + length
    return ies, short_message[1 + udhl :]


# -- message ids and receipts ----------------------------------------------------

_ID_RULES: Final = frozenset({"as_is", "lower", "strip_zeros", "hex_to_dec", "dec_to_hex"})
_HEX = re.compile(r"[0-9A-Fa-f]+")
_DEC = re.compile(r"[0-9]+")


def _parse_rule(rule: str) -> tuple[str, ...]:
    steps = tuple(step.strip() for step in rule.split("+"))
    for step in steps:
        if step not in _ID_RULES:
            raise ValueError(f"unknown message id rule {step!r} in {rule!r}; expected one of {sorted(_ID_RULES)}")
    return steps


def normalise_message_id(raw: str, rule: str = "as_is") -> str:
    """Normalise an SMSC message id so submit_sm_resp and receipt ids match.

    ``rule`` is one step or several joined by ``+``, applied left to right:

    * ``as_is``: unchanged;
    * ``lower``: lower-case (hex ids whose case differs);
    * ``strip_zeros``: leading zeros removed (``"000"`` becomes ``"0"``);
    * ``hex_to_dec``: hex digits to a decimal string (``"1A"`` -> ``"26"``);
    * ``dec_to_hex``: decimal digits to lower-case hex (``"26"`` -> ``"1a"``).

    The result depends only on ``raw`` and ``rule``. Raises ValueError for an
    unknown rule or an id the rule cannot convert (e.g. ``hex_to_dec`` on
    ``"xyz"``), never guessing.
    """
    if not isinstance(raw, str):
        raise TypeError(f"message id must be str, not {type(raw).__name__}")
    value = raw
    for step in _parse_rule(rule):
        if step == "lower":
            value = value.lower()
        elif step == "strip_zeros":
            value = value.lstrip("0") or ("0" if value else "")
        elif step == "hex_to_dec":
            if not _HEX.fullmatch(value):
                raise ValueError(f"message id {raw!r} is not hexadecimal")
            value = str(int(value, 16))
        elif step == "dec_to_hex":
            if not _DEC.fullmatch(value):
                raise ValueError(f"message id {raw!r} is not decimal")
            value = format(int(value, 10), "x")
    return value


_RECEIPT_KEY = re.compile(r"(?i)\b(id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err|text)\s*:")


def _receipt_date(value: str | None) -> datetime | None:
    if not value or not value.isascii() or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime(
            2000 + int(value[0:2]), int(value[2:4]), int(value[4:6]),
            int(value[6:8]), int(value[8:10]), int(value[10:12]) if len(value) == 12 else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


def parse_receipt(
    text: str | bytes,
    *,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
) -> dict[str, Any]:
    """Parse an SMPP 3.4 Appendix B delivery receipt.

    Returns a dict with exactly the keys ``id, sub, dlvrd, submit_date,
    done_date, stat, err, text``; a missing or unreadable field is None.
    ``sub``/``dlvrd`` are ints, the dates aware UTC datetimes (10-digit
    ``YYMMDDhhmm`` or 12-digit ``YYMMDDhhmmss``; the SMSC's zone is not sent,
    UTC is assumed), ``stat`` upper-case with long forms mapped to the 7-letter
    ones (``DELIVERED`` -> ``DELIVRD``). Keys are case-insensitive and
    ``text:`` takes the rest of the string. When given, the
    ``receipted_message_id`` / ``message_state`` TLV values win over the text.
    Never raises for odd content.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("latin-1")
    raw: dict[str, str] = {}
    matches = list(_RECEIPT_KEY.finditer(text))
    for index, match in enumerate(matches):
        key = match.group(1).lower().replace("_", " ")
        if key == "text":
            raw.setdefault("text", text[match.end() :].strip())
            break
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        raw.setdefault(key, text[match.end() : end].strip())

    stat = raw.get("stat") or None
    if stat is not None:
        stat = stat.upper()
        stat = _STAT_ALIASES.get(stat, stat)
    if message_state is not None and message_state in MESSAGE_STATES:
        stat = MESSAGE_STATES[message_state]
    message_id = raw.get("id") or None
    if receipted_message_id:
        message_id = receipted_message_id
    return {
        "id": message_id,
        "sub": _int_or_none(raw.get("sub")),
        "dlvrd": _int_or_none(raw.get("dlvrd")),
        "submit_date": _receipt_date(raw.get("submit date")),
        "done_date": _receipt_date(raw.get("done date")),
        "stat": stat,
        "err": raw.get("err") or None,
        "text": raw.get("text"),
    }


# -- results and events ---------------------------------------------------------


class Outcome(StrEnum):
    """What became of one submitted part."""

    ACCEPTED = "accepted"  #: submit_sm_resp OK with a message id
    TEMPORARY = "temporary"  #: throttled / queue full, or never written: retry later
    PERMANENT = "permanent"  #: any other error status: do not retry as is
    UNKNOWN = "unknown"  #: written, no response (link lost / timeout): may have been accepted


def classify_status(status: int, temporary: Iterable[int] = TEMPORARY_STATUSES) -> Outcome:
    """ACCEPTED for 0, TEMPORARY for the given statuses, PERMANENT otherwise."""
    if status == ESME_ROK:
        return Outcome.ACCEPTED
    return Outcome.TEMPORARY if status in temporary else Outcome.PERMANENT


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The fate of one part of a submitted message."""

    ref: Any  #: the caller's reference given to ``submit``
    part_index: int  #: 0-based
    part_count: int
    outcome: Outcome
    sequence: int | None = None  #: None when the part was never written
    command_status: int | None = None  #: None when no response came
    message_id: str | None = None  #: raw id from submit_sm_resp
    message_key: str | None = None  #: id normalised with ``submit_id_rule`` (None if it cannot be)
    error: str | None = None

    @property
    def written(self) -> bool:
        """True if the submit_sm reached the socket (an UNKNOWN may be live)."""
        return self.sequence is not None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """A delivery receipt (deliver_sm / data_sm with a receipt esm_class or TLV)."""

    message_id: str | None  #: raw id: receipted_message_id TLV if present, else ``id:``
    message_key: str | None  #: normalised with ``receipt_id_rule`` (None if it cannot be)
    stat: str | None
    err: str | None
    sub: int | None
    dlvrd: int | None
    submit_date: datetime | None
    done_date: datetime | None
    text: str | None
    message_state: int | None  #: message_state TLV
    network_error_code: bytes | None
    source_addr: str
    destination_addr: str
    raw: str  #: the receipt text as received
    received_at: datetime


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A mobile-originated message, reassembled when it came in several parts."""

    source_addr: str
    destination_addr: str
    text: str
    data_coding: int
    part_count: int
    complete: bool  #: False when parts were still missing at the reassembly timeout
    decode_error: str | None  #: set when the bytes did not decode cleanly (text used a fallback)
    received_at: datetime


# -- pacing ---------------------------------------------------------------------


class TokenBucket:
    """Thread-safe token bucket: ``acquire`` blocks until a token is free.

    Over any interval of T seconds at most ``burst + rate * T`` acquisitions
    return. Tokens are reserved in arrival order, so waiters are served FIFO.
    """

    def __init__(self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1, int(burst if burst is not None else max(1.0, rate / 10)))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token now and return how long to wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        """Block until a token is available."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)


class Backoff:
    """Exponential backoff: ``initial * factor**n`` capped at ``maximum``.

    With ``jitter`` j each delay is drawn from ``[d * (1 - j), d]``.
    ``reset`` starts again from ``initial``.
    """

    def __init__(self, initial: float, maximum: float, factor: float = 2.0, jitter: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        """The next delay in seconds."""
        delay = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt = min(self._attempt + 1, 64)
        if self.jitter:
            delay *= 1 - self.jitter * self._rng.random()
        return delay

    def reset(self) -> None:
        """After a successful bind."""
        self._attempt = 0


# -- client -----------------------------------------------------------------------


class BindError(Exception):
    """The SMSC refused the bind (bad credentials, ...); ``status`` is its command_status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(Exception):
    """The connection ended (EOF, reset, unbind, dead keepalive)."""


def _validate_rule(rule: str) -> str:
    _parse_rule(rule)
    return rule


@dataclass(frozen=True, slots=True)
class SMPPConfig:
    """Everything one bind needs. Times are in seconds."""

    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    window: int = 10
    max_rate: float | None = None  #: parts/s for this bind (token bucket); None = unlimited
    burst: int | None = None  #: bucket size; default max(1, max_rate / 10)
    enquire_link_interval: float = 30.0  #: send enquire_link after this long without traffic
    enquire_link_timeout: float = 10.0  #: no PDU this long after an enquire_link: link is dead
    response_timeout: float = 30.0  #: submit_sm without response this long: UNKNOWN
    connect_timeout: float = 10.0
    bind_timeout: float = 10.0
    write_timeout: float = 30.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    reconnect_factor: float = 2.0
    reconnect_jitter: float = 0.1
    drain_timeout: float = 5.0  #: on stop, wait this long for outstanding responses
    submit_id_rule: str = "as_is"  #: normalise_message_id rule for submit_sm_resp ids
    receipt_id_rule: str = "as_is"  #: and for receipt ids, so both give the same key
    source_ton: int | None = None  #: None: 5/0 for alphanumeric, 1/1 for numeric senders
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    registered_delivery: int = 1
    temporary_statuses: frozenset[int] = field(default_factory=lambda: TEMPORARY_STATUSES)
    mo_reassembly_timeout: float = 600.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.max_rate is not None and self.max_rate <= 0:
            raise ValueError("max_rate must be positive or None")
        _validate_rule(self.submit_id_rule)
        _validate_rule(self.receipt_id_rule)
        for name in ("enquire_link_interval", "enquire_link_timeout", "response_timeout", "connect_timeout",
                     "bind_timeout", "write_timeout", "reconnect_initial"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


_ALNUM_SENDER = re.compile(r"[ -~]{1,11}")
_DIGITS = re.compile(r"[0-9]+")


def source_address(source: str, ton: int | None = None, npi: int | None = None) -> tuple[int, int, str]:
    """(ton, npi, addr) for a sender id: numeric up to 16 digits, alphanumeric up to 11.

    A leading ``+`` is dropped. Raises ValueError for anything else.
    """
    value = source.strip()
    digits = value[1:] if value.startswith("+") else value
    if _DIGITS.fullmatch(digits):
        if len(digits) > 16:
            raise ValueError(f"numeric sender {source!r} is longer than 16 digits")
        return (1 if ton is None else ton), (1 if npi is None else npi), digits
    if not _ALNUM_SENDER.fullmatch(value):
        raise ValueError(f"sender {source!r} must be 1-11 printable ASCII characters or up to 16 digits")
    return (5 if ton is None else ton), (0 if npi is None else npi), value


def destination_address(dest: str) -> str:
    """Digits of an MSISDN (a leading ``+`` dropped). Raises ValueError otherwise."""
    value = dest.strip()
    value = value[1:] if value.startswith("+") else value
    if not _DIGITS.fullmatch(value) or len(value) > 20:
        raise ValueError(f"destination {dest!r} must be 1-20 digits")
    return value


def _decode_text(payload: bytes, coding: int) -> tuple[str, str | None]:
    """Best-effort text of an incoming message; (text, error or None)."""
    try:
        if coding == 0x08:
            return decode_ucs2(payload), None
        if coding == 0x03:
            return payload.decode("latin-1"), None
        if coding == 0x01:
            return payload.decode("ascii"), None
        if coding == 0x00 or (coding & 0xF0 == 0xF0 and not coding & 0x04):
            return decode_gsm7(payload), None
    except ValueError as exc:
        if coding == 0x08:
            return payload.decode("utf-16-be", errors="replace"), str(exc)
        return payload.decode("latin-1"), str(exc)
    return payload.decode("latin-1"), f"unsupported data_coding 0x{coding:02X}, shown as Latin-1"


@dataclass(slots=True)
class _Pending:
    ref: Any
    part_index: int
    part_count: int
    future: Future[SubmitResult]
    sent_at: float = 0.0
    sequence: int = 0


@dataclass(slots=True)
class _Partial:
    first_seen: float
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)


class _Connection:
    """One TCP connection: socket, read buffer, parsed-but-unhandled PDUs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.buffer = bytearray()
        self.inbox: deque[Pdu] = deque()
        self.write_lock = threading.Lock()
        self.last_rx = time.monotonic()
        self.enquire_sent_at: float | None = None
        self.broken = False

    def fill(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for data and parse it into ``inbox``; False if none came."""
        if not self.selector.select(timeout):
            return False
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionLost("connection closed by the SMSC")
        self.buffer += data
        self.inbox.extend(split_pdus(self.buffer))
        self.last_rx = time.monotonic()
        self.enquire_sent_at = None
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.selector.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


SubmitCallback = Callable[[SubmitResult], None]
ReceiptCallback = Callable[[DeliveryReceipt], "Future[Any] | None"]
IncomingCallback = Callable[[IncomingMessage], None]
StateCallback = Callable[[str], None]


class SMPPClient:
    """One SMPP 3.4 transceiver bind with a window, pacing, keepalive and reconnect.

    Usage::

        client = SMPPClient(SMPPConfig("smsc", 2775, "isp", "secret"), on_receipt=store)
        client.start()
        futures = client.submit("8801711000000", "ISP", "Bill paid", ref=outbox_id)
        results = [f.result() for f in futures]
        client.stop()

    ``state`` is one of ``stopped, connecting, binding, bound, backoff, stopping``.
    """

    def __init__(
        self,
        config: SMPPConfig,
        *,
        on_submit_resp: SubmitCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
        on_incoming: IncomingCallback | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        self.config = config
        self.on_submit_resp = on_submit_resp
        self.on_receipt = on_receipt
        self.on_incoming = on_incoming
        self.on_state = on_state
        self.state = "stopped"
        self.last_bind_error: BindError | None = None
        #: Delays (s) slept before each reconnect attempt, most recent last.
        self.reconnect_delays: deque[float] = deque(maxlen=100)
        self.counters: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._bound = False
        self._stopping = False
        self._conn: _Connection | None = None
        self._in_flight = 0
        self._pending: dict[int, _Pending] = {}
        self._sequence = 0
        self._concat_ref = random.randrange(256)
        self._bucket = TokenBucket(config.max_rate, config.burst) if config.max_rate else None
        self._backoff = Backoff(config.reconnect_initial, max(config.reconnect_max, config.reconnect_initial),
                                config.reconnect_factor, config.reconnect_jitter)
        self._stop_event = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._partials: dict[tuple[str, str, int, int], _Partial] = {}
        self._log = logging.LoggerAdapter(logger, {"smpp": config.name or f"{config.host}:{config.port}"})
        self._handlers: dict[int, Callable[[_Connection, Pdu], None]] = {
            SUBMIT_SM_RESP: self._handle_submit_resp,
            GENERIC_NACK: self._handle_generic_nack,
            DELIVER_SM: self._handle_deliver,
            DATA_SM: self._handle_deliver,
            ENQUIRE_LINK: self._handle_enquire_link,
            ENQUIRE_LINK_RESP: self._ignore,
            UNBIND: self._handle_unbind,
            UNBIND_RESP: self._handle_unbind_resp,
            ALERT_NOTIFICATION: self._ignore,
        }
        self._unbind_acknowledged = False

    # -- lifecycle ----------------------------------------------------------------

    def start(self, wait: float | None = 10.0) -> bool:
        """Start the I/O thread (once per client); with ``wait``, block until the first bind attempt ends.

        Returns True when bound. Raises :class:`BindError` (and stops) when the
        SMSC refused the first bind: wrong credentials are not retried blindly.
        A connection failure returns False and the client keeps retrying with
        backoff in the background.
        """
        if self._thread is not None:
            raise RuntimeError("client already started")
        self._thread = threading.Thread(target=self._run, name=f"smpp-{self.config.name or self.config.port}", daemon=True)
        self._thread.start()
        if wait is None:
            return False
        self._first_attempt.wait(wait)
        if self.last_bind_error is not None and not self._bound:
            error = self.last_bind_error
            self.stop()
            raise error
        return self._bound

    def stop(self, timeout: float = 10.0) -> None:
        """Drain outstanding responses (``drain_timeout``), unbind, close, join.

        Parts still outstanding after the drain resolve UNKNOWN; submits that
        were waiting for a slot resolve TEMPORARY (never written).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._set_state("stopped")

    def __enter__(self) -> SMPPClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def bound(self) -> bool:
        """True while a bind is up and submits can be written."""
        return self._bound

    @property
    def in_flight(self) -> int:
        """Window slots in use (outstanding submit_sm plus ones being written)."""
        return self._in_flight

    def wait_bound(self, timeout: float) -> bool:
        """Block until bound (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._bound or self._stopping, timeout) and self._bound

    # -- submitting ------------------------------------------------------------------

    def submit(
        self,
        dest: str,
        source: str,
        text: str,
        *,
        ref: Any,
        timeout: float | None = 30.0,
        concat_ref: int | None = None,
    ) -> list[Future[SubmitResult]]:
        """Segment ``text`` with our encoding module and write one submit_sm per part.

        Returns one future per part, in part order; each resolves to a
        :class:`SubmitResult` (never an exception) after ``on_submit_resp`` was
        called with it. Blocks while the window is full or the bind is down, at
        most ``timeout`` seconds per part; a part that could not be written in
        that time (or after ``stop``) resolves TEMPORARY with ``written`` False.
        Multipart messages carry a ``05 00 03`` concatenation UDH (reference
        ``concat_ref`` or a per-client counter) with esm_class 0x40.
        Raises ValueError / SegmentationError for bad addresses or text,
        before anything is written.
        """
        config = self.config
        source_ton, source_npi, source_addr = source_address(source, config.source_ton, config.source_npi)
        destination = destination_address(dest)
        seg = segment(text)
        coding = data_coding(seg.encoding)
        total = len(seg.parts)
        if total > 1 and concat_ref is None:
            with self._cond:
                self._concat_ref = (self._concat_ref + 1) % 256
                concat_ref = self._concat_ref
        bodies: list[bytes] = []
        for index, part in enumerate(seg.parts):
            payload = encode_part(part, seg.encoding)
            esm_class = 0
            if total > 1:
                assert concat_ref is not None
                payload = concat_udh(concat_ref, total, index + 1) + payload
                esm_class = ESM_CLASS_UDHI
            bodies.append(
                encode_submit_sm(
                    source_addr=source_addr, source_ton=source_ton, source_npi=source_npi,
                    destination_addr=destination, dest_ton=config.dest_ton, dest_npi=config.dest_npi,
                    short_message=payload, data_coding=coding, esm_class=esm_class,
                    registered_delivery=config.registered_delivery,
                )
            )
        return [self._submit_part(body, ref, index, total, timeout) for index, body in enumerate(bodies)]

    def submit_and_wait(self, dest: str, source: str, text: str, *, ref: Any, timeout: float = 60.0) -> list[SubmitResult]:
        """:meth:`submit` and wait for every part's result (UNKNOWN results may take ``response_timeout``)."""
        futures = self.submit(dest, source, text, ref=ref, timeout=timeout)
        wait_futures(futures, timeout=timeout + self.config.response_timeout)
        return [f.result(timeout=0.001) if f.done() else SubmitResult(ref, i, len(futures), Outcome.UNKNOWN,
                error="no result yet") for i, f in enumerate(futures)]

    def _submit_part(self, body: bytes, ref: Any, index: int, total: int, timeout: float | None) -> Future[SubmitResult]:
        future: Future[SubmitResult] = Future()
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._stopping or (self._bound and self._in_flight < self.config.window), remaining()
            )
            if self._stopping or not ok:
                reason = "client stopped" if self._stopping else "no bind or window slot within timeout"
                return self._not_sent(future, ref, index, total, reason)
            self._in_flight += 1
        registered = False
        try:
            if self._bucket is not None:
                self._bucket.acquire()
            with self._cond:
                ok = self._cond.wait_for(lambda: self._stopping or self._bound, remaining())
                if self._stopping or not ok or self._conn is None:
                    self._in_flight -= 1
                    self._cond.notify_all()
                    reason = "client stopped" if self._stopping else "bind lost and not back within timeout"
                    return self._not_sent(future, ref, index, total, reason)
                sequence = self._next_sequence()
                pending = _Pending(ref, index, total, future, time.monotonic(), sequence)
                self._pending[sequence] = pending
                registered = True
                conn = self._conn
            self._write(conn, encode_pdu(SUBMIT_SM, sequence, body))
        finally:
            if not registered and not future.done():
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
        return future

    def _not_sent(self, future: Future[SubmitResult], ref: Any, index: int, total: int, reason: str) -> Future[SubmitResult]:
        self._deliver_result(future, SubmitResult(ref, index, total, Outcome.TEMPORARY, error=reason))
        return future

    def _next_sequence(self) -> int:
        """Called with ``_cond`` held; skips numbers still outstanding."""
        while True:
            self._sequence = self._sequence % MAX_SEQUENCE + 1
            if self._sequence not in self._pending:
                return self._sequence

    def _write(self, conn: _Connection, data: bytes) -> None:
        """Write one PDU; a failure marks the connection broken (the I/O thread reconnects)."""
        try:
            with conn.write_lock:
                conn.sock.sendall(data)
        except OSError as exc:
            if not conn.broken:
                self._log.warning("SMPP write failed: %s", exc)
            conn.broken = True
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def _deliver_result(self, future: Future[SubmitResult], result: SubmitResult) -> None:
        if self.on_submit_resp is not None:
            try:
                self.on_submit_resp(result)
            except Exception:
                self._log.exception("on_submit_resp callback failed for %r part %d", result.ref, result.part_index)
        future.set_result(result)

    # -- I/O thread -----------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                self._log.exception("on_state callback failed")

    def _run(self) -> None:
        while not self._stop_event.is_set():
            conn: _Connection | None = None
            try:
                self._set_state("connecting")
                conn = self._connect()
                self._set_state("binding")
                self._bind(conn)
                self._backoff.reset()
                with self._cond:
                    self._conn = conn
                    self._bound = True
                    self._cond.notify_all()
                self.counters["binds"] += 1
                self._set_state("bound")
                self._first_attempt.set()
                self._read_loop(conn)
            except BindError as exc:
                self.last_bind_error = exc
                self.counters["bind_failures"] += 1
                self._log.error("SMPP bind refused: %s", exc)
            except (OSError, ConnectionLost, PduError) as exc:
                self.counters["connection_errors"] += 1
                self._log.warning("SMPP connection ended: %s: %s", type(exc).__name__, exc)
            except Exception:
                self.counters["connection_errors"] += 1
                self._log.exception("unexpected error in the SMPP I/O thread; reconnecting")
            finally:
                self._connection_lost(conn)
            self._first_attempt.set()
            if self._stop_event.is_set():
                break
            delay = self._backoff.next()
            self.reconnect_delays.append(delay)
            self._set_state("backoff")
            self._log.info("SMPP reconnect in %.2fs", delay)
            self._stop_event.wait(delay)
        self._set_state("stopped")

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self.config.host, self.config.port), timeout=self.config.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(self.config.write_timeout)  # reads go through the selector
        except OSError:
            sock.close()
            raise
        self.counters["connects"] += 1
        return _Connection(sock)

    def _bind(self, conn: _Connection) -> None:
        config = self.config
        with self._cond:
            sequence = self._next_sequence()
        self._write(conn, encode_pdu(BIND_TRANSCEIVER, sequence,
                                     encode_bind(config.system_id, config.password, config.system_type)))
        deadline = time.monotonic() + config.bind_timeout
        deferred: list[Pdu] = []  # anything else is handled once bound, never dropped
        while True:
            while conn.inbox:
                pdu = conn.inbox.popleft()
                if pdu.command_id in (BIND_TRANSCEIVER_RESP, GENERIC_NACK) and pdu.sequence == sequence:
                    if pdu.command_status != ESME_ROK:
                        raise BindError(pdu.command_status,
                                        f"bind_transceiver refused with status 0x{pdu.command_status:08X}")
                    self._log.info("SMPP bound as transceiver %r", config.system_id)
                    conn.inbox.extendleft(reversed(deferred))
                    return
                if pdu.command_id == ENQUIRE_LINK:
                    self._handle_enquire_link(conn, pdu)
                else:
                    deferred.append(pdu)
            left = deadline - time.monotonic()
            if left <= 0 or conn.broken:
                raise ConnectionLost("no bind_transceiver_resp within bind_timeout")
            conn.fill(min(left, 0.2))

    def _read_loop(self, conn: _Connection) -> None:
        config = self.config
        tick = min(0.1, config.enquire_link_interval / 2)
        next_housekeeping = 0.0
        drain_deadline: float | None = None
        unbind_deadline: float | None = None
        while True:
            while conn.inbox:
                self._dispatch(conn, conn.inbox.popleft())
            if conn.broken:
                raise ConnectionLost("write failed")
            now = time.monotonic()
            if self._stopping:
                if drain_deadline is None:
                    drain_deadline = now + config.drain_timeout
                if unbind_deadline is None and (self._in_flight == 0 or now >= drain_deadline):
                    with self._cond:
                        sequence = self._next_sequence()
                    self._write(conn, encode_pdu(UNBIND, sequence))
                    unbind_deadline = now + 1.0
                if unbind_deadline is not None and (self._unbind_acknowledged or now >= unbind_deadline):
                    return
            if now >= next_housekeeping:
                next_housekeeping = now + tick
                self._housekeeping(conn, now)
            conn.fill(tick)

    def _housekeeping(self, conn: _Connection, now: float) -> None:
        config = self.config
        if conn.enquire_sent_at is not None:
            if now - conn.enquire_sent_at > config.enquire_link_timeout:
                raise ConnectionLost("no answer to enquire_link")
        elif now - conn.last_rx >= config.enquire_link_interval:
            with self._cond:
                sequence = self._next_sequence()
            conn.enquire_sent_at = now
            self.counters["enquire_link_sent"] += 1
            self._write(conn, encode_pdu(ENQUIRE_LINK, sequence))
        expired: list[_Pending] = []
        with self._cond:
            for sequence, pending in list(self._pending.items()):
                if now - pending.sent_at > config.response_timeout:
                    del self._pending[sequence]
                    expired.append(pending)
            if expired:
                self._in_flight -= len(expired)
                self._cond.notify_all()
        for pending in expired:
            self._log.warning("no submit_sm_resp for sequence %d within %.0fs", pending.sequence, config.response_timeout)
            self._deliver_result(pending.future, SubmitResult(
                pending.ref, pending.part_index, pending.part_count, Outcome.UNKNOWN, pending.sequence,
                error="no submit_sm_resp within response_timeout"))
        for key, partial in list(self._partials.items()):
            if now - partial.first_seen > config.mo_reassembly_timeout:
                try:
                    self._flush_partial(key, partial, complete=False)
                except Exception:
                    self._partials.pop(key, None)
                    self._log.exception("on_incoming failed for an incomplete message from %s; dropped", key[0])

    def _connection_lost(self, conn: _Connection | None) -> None:
        with self._cond:
            if conn is not None and self._conn is conn:
                self._conn = None
            self._bound = False
            lost = list(self._pending.values()) if conn is not None else []
            self._pending.clear()
            self._in_flight -= len(lost)
            self._cond.notify_all()
        self._unbind_acknowledged = False
        if conn is not None:
            conn.close()
        for pending in lost:
            self._deliver_result(pending.future, SubmitResult(
                pending.ref, pending.part_index, pending.part_count, Outcome.UNKNOWN, pending.sequence,
                error="connection lost before submit_sm_resp"))

    # -- incoming PDUs --------------------------------------------------------------

    def _dispatch(self, conn: _Connection, pdu: Pdu) -> None:
        handler = self._handlers.get(pdu.command_id)
        try:
            if handler is not None:
                handler(conn, pdu)
            elif pdu.command_id & RESPONSE_BIT:
                self.counters["unknown_pdus"] += 1
                self._log.warning("unexpected %s (status 0x%08X, sequence %d) ignored",
                                  pdu.name, pdu.command_status, pdu.sequence)
            else:
                self.counters["unknown_pdus"] += 1
                self._log.warning("unsupported %s from the SMSC answered with generic_nack", pdu.name)
                self._write(conn, encode_pdu(GENERIC_NACK, pdu.sequence, status=ESME_RINVCMDID))
        except ConnectionLost:
            raise
        except PduError as exc:
            self.counters["malformed_pdus"] += 1
            self._log.warning("malformed %s (sequence %d): %s", pdu.name, pdu.sequence, exc)
            if not pdu.command_id & RESPONSE_BIT:
                self._write(conn, encode_pdu(GENERIC_NACK, pdu.sequence, status=ESME_RINVCMDLEN))
        except Exception:
            self._log.exception("error handling %s (sequence %d); continuing", pdu.name, pdu.sequence)

    def _ignore(self, conn: _Connection, pdu: Pdu) -> None:
        if pdu.command_id == ALERT_NOTIFICATION:
            self._log.info("alert_notification received")

    def _handle_enquire_link(self, conn: _Connection, pdu: Pdu) -> None:
        self.counters["enquire_link_received"] += 1
        self._write(conn, encode_pdu(ENQUIRE_LINK_RESP, pdu.sequence))

    def _handle_unbind(self, conn: _Connection, pdu: Pdu) -> None:
        self._write(conn, encode_pdu(UNBIND_RESP, pdu.sequence))
        raise ConnectionLost("SMSC sent unbind")

    def _handle_unbind_resp(self, conn: _Connection, pdu: Pdu) -> None:
        self._unbind_acknowledged = True

    def _handle_submit_resp(self, conn: _Connection, pdu: Pdu) -> None:
        message_id: str | None = None
        if pdu.body:
            try:
                message_id, _ = _read_cstring(pdu.body, 0, 65, "message_id", lenient_end=True)
            except PduError as exc:
                self._log.warning("submit_sm_resp %d has an unreadable message_id: %s", pdu.sequence, exc)
        with self._cond:
            pending = self._pending.pop(pdu.sequence, None)
            if pending is not None:
                self._in_flight -= 1
                self._cond.notify()
        if pending is None:
            self.counters["late_responses"] += 1
            self._log.warning("submit_sm_resp for unknown sequence %d (status 0x%08X, id %r)",
                              pdu.sequence, pdu.command_status, message_id)
            return
        self.counters["submit_resp"] += 1
        self._resolve(pending, pdu.command_status, message_id or None)

    def _handle_generic_nack(self, conn: _Connection, pdu: Pdu) -> None:
        with self._cond:
            pending = self._pending.pop(pdu.sequence, None)
            if pending is not None:
                self._in_flight -= 1
                self._cond.notify()
        if pending is None:
            self._log.warning("generic_nack status 0x%08X for sequence %d", pdu.command_status, pdu.sequence)
            return
        self._resolve(pending, pdu.command_status or ESME_RSYSERR, None)

    def _resolve(self, pending: _Pending, status: int, message_id: str | None) -> None:
        outcome = classify_status(status, self.config.temporary_statuses)
        key: str | None = None
        error: str | None = None
        if outcome is Outcome.ACCEPTED:
            if message_id is None:
                error = "submit_sm_resp OK without a message_id"
            else:
                key = self._normalise(message_id, self.config.submit_id_rule)
        else:
            error = f"command_status 0x{status:08X}"
        self._deliver_result(pending.future, SubmitResult(
            pending.ref, pending.part_index, pending.part_count, outcome, pending.sequence, status,
            message_id, key, error))

    def _normalise(self, raw: str, rule: str) -> str | None:
        try:
            return normalise_message_id(raw, rule)
        except ValueError as exc:
            self._log.warning("message id %r does not fit rule %r: %s", raw, rule, exc)
            return None

    def _handle_deliver(self, conn: _Connection, pdu: Pdu) -> None:
        is_data_sm = pdu.command_id == DATA_SM
        sm = decode_data_sm(pdu.body) if is_data_sm else decode_sm(pdu.body)
        status = ESME_ROK
        response = DATA_SM_RESP if is_data_sm else DELIVER_SM_RESP
        try:
            if (sm.esm_class & 0x3C) in _RECEIPT_TYPES or TAG_RECEIPTED_MESSAGE_ID in sm.tlvs:
                stored = self._handle_receipt(sm)
                if isinstance(stored, Future):
                    stored.add_done_callback(
                        lambda f, seq=pdu.sequence: self._acknowledge_later(conn, response, seq, f))
                    return
            else:
                self._handle_incoming(sm)
        except PduError:
            raise
        except Exception:
            status = ESME_RX_T_APPN
            self._log.exception("callback failed for %s from %s; asking the SMSC to redeliver",
                                pdu.name, sm.source_addr)
        self._write(conn, encode_pdu(response, pdu.sequence, b"\x00", status))

    def _acknowledge_later(self, conn: _Connection, response: int, sequence: int, stored: Future[Any]) -> None:
        """Answer a receipt whose ``on_receipt`` returned a future, once it resolved. On a
        connection that has gone since, nothing is written: the SMSC redelivers."""
        status = ESME_ROK
        if stored.cancelled() or stored.exception() is not None:
            status = ESME_RX_T_APPN
            self.counters["receipts_not_stored"] += 1
            self._log.warning("receipt (deliver_sm %d) not stored: %s; asking the SMSC to redeliver", sequence,
                              "cancelled" if stored.cancelled() else stored.exception())
        if conn.broken or self._conn is not conn:
            return
        self._write(conn, encode_pdu(response, sequence, b"\x00", status))

    def _handle_receipt(self, sm: ShortMessage) -> Future[Any] | None:
        self.counters["receipts"] += 1
        raw_text = sm.short_message.decode("latin-1")
        tlv_id = sm.tlvs.get(TAG_RECEIPTED_MESSAGE_ID)
        tlv_state = sm.tlvs.get(TAG_MESSAGE_STATE)
        fields = parse_receipt(
            raw_text,
            receipted_message_id=tlv_id.split(b"\x00", 1)[0].decode("latin-1") if tlv_id else None,
            message_state=tlv_state[0] if tlv_state else None,
        )
        message_id = fields["id"]
        receipt = DeliveryReceipt(
            message_id=message_id,
            message_key=self._normalise(message_id, self.config.receipt_id_rule) if message_id else None,
            stat=fields["stat"], err=fields["err"], sub=fields["sub"], dlvrd=fields["dlvrd"],
            submit_date=fields["submit_date"], done_date=fields["done_date"], text=fields["text"],
            message_state=tlv_state[0] if tlv_state else None,
            network_error_code=sm.tlvs.get(TAG_NETWORK_ERROR_CODE),
            source_addr=sm.source_addr, destination_addr=sm.destination_addr,
            raw=raw_text, received_at=datetime.now(UTC),
        )
        if self.on_receipt is None:
            self._log.info("receipt for %r (%s) dropped: no on_receipt callback", message_id, receipt.stat)
            return None
        return self.on_receipt(receipt)

    def _handle_incoming(self, sm: ShortMessage) -> None:
        self.counters["incoming_parts"] += 1
        payload = sm.short_message
        concat: tuple[int, int, int] | None = None
        if sm.esm_class & ESM_CLASS_UDHI:
            ies, payload = parse_udh(payload)
            if 0x00 in ies and len(ies[0x00]) == 3:
                concat = (ies[0x00][0], ies[0x00][1], ies[0x00][2])
            elif 0x08 in ies and len(ies[0x08]) == 4:
                ie = ies[0x08]
                concat = ((ie[0] << 8) | ie[1], ie[2], ie[3])
        elif TAG_SAR_MSG_REF_NUM in sm.tlvs and TAG_SAR_TOTAL_SEGMENTS in sm.tlvs and TAG_SAR_SEGMENT_SEQNUM in sm.tlvs:
            concat = (int.from_bytes(sm.tlvs[TAG_SAR_MSG_REF_NUM], "big"),
                      sm.tlvs[TAG_SAR_TOTAL_SEGMENTS][-1], sm.tlvs[TAG_SAR_SEGMENT_SEQNUM][-1])
        if concat is None or concat[1] <= 1:
            self._emit_incoming(sm.source_addr, sm.destination_addr, payload, sm.data_coding, 1, True)
            return
        ref, total, seq = concat
        if not 1 <= seq <= total:
            self._log.warning("incoming part %d of %d from %s ignored", seq, total, sm.source_addr)
            return
        key = (sm.source_addr, sm.destination_addr, ref, total)
        partial = self._partials.setdefault(key, _Partial(time.monotonic(), sm.data_coding))
        partial.parts[seq] = payload
        if len(partial.parts) == total:
            self._flush_partial(key, partial, complete=True)

    def _flush_partial(self, key: tuple[str, str, int, int], partial: _Partial, *, complete: bool) -> None:
        source, dest, _ref, total = key
        payload = b"".join(partial.parts[seq] for seq in sorted(partial.parts))
        # The buffer is only dropped once the callback succeeded, so a redelivered
        # last part completes the message again.
        self._emit_incoming(source, dest, payload, partial.data_coding, total, complete)
        self._partials.pop(key, None)

    def _emit_incoming(self, source: str, dest: str, payload: bytes, coding: int, parts: int, complete: bool) -> None:
        text, error = _decode_text(payload, coding)
        if error:
            self._log.warning("incoming message from %s: %s", source, error)
        message = IncomingMessage(source, dest, text, coding, parts, complete, error, datetime.now(UTC))
        self.counters["incoming"] += 1
        if self.on_incoming is None:
            self._log.info("incoming message from %s dropped: no on_incoming callback", source)
            return
        self.on_incoming(message)
