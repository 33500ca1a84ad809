"""An SMSC simulator speaking SMPP 3.4 over real TCP, for tests and benches.

It has its own PDU codec, written independently of ``notifications.smpp`` so
the client is not checked against itself (only the GSM 03.38 / UCS-2 tables
come from ``notifications.encoding``). One thread accepts connections, one
thread per connection reads and answers, one scheduler thread sends delayed
responses and receipts. Answers to the PDUs found in one ``recv`` are written
with one ``sendall`` and ``TCP_NODELAY`` is set, so it keeps up with
thousands of submits per second.

Protocol: ``bind_transceiver`` / ``bind_transmitter`` / ``bind_receiver``
(system_id and password checked: unknown system_id ``ESME_RBINDFAIL``, wrong
password ``ESME_RINVPASWD``; error responses carry no body, as 3.4 says),
``submit_sm`` (``short_message`` or the ``message_payload`` TLV, UDH kept),
``enquire_link``, ``unbind``, ``deliver_sm_resp``/``enquire_link_resp`` from
the ESME recorded, ``generic_nack`` ``ESME_RINVCMDID`` for anything else.

Test hooks (all thread-safe, usable while running):

* :meth:`SMSCSimulator.configure` sets the :class:`Behaviour` globally or for
  one destination: accept / reject with a status / throttle, response delay,
  receipts ``late`` (after ``dlr_delay``), ``early`` (written before the
  ``submit_sm_resp``), ``dlr_twice``, the receipt's stat/err, 10- or 12-digit
  dates, TLVs present or omitted, and an id style for the receipt that may
  differ from the response's (:data:`ID_STYLES`);
* :meth:`~SMSCSimulator.throttle_next` answers the next N submits with
  ``ESME_RTHROTTLED`` (or another status);
* :meth:`~SMSCSimulator.hold_responses` / :meth:`~SMSCSimulator.release_responses`;
  :attr:`~SMSCSimulator.silent` (read everything, answer nothing);
* :meth:`~SMSCSimulator.push_mo` (GSM-7 / UCS-2, multipart with an 8- or
  16-bit reference UDH, any part order), :meth:`~SMSCSimulator.send_receipt`,
  :meth:`~SMSCSimulator.send_enquire_link`, :meth:`~SMSCSimulator.send_pdu`,
  :meth:`~SMSCSimulator.send_raw`, :meth:`~SMSCSimulator.send_unbind`;
* :meth:`~SMSCSimulator.drop_connections`, :meth:`~SMSCSimulator.close_listener`,
  :meth:`~SMSCSimulator.reopen_listener` (same port);
* :attr:`~SMSCSimulator.submits` (every submit_sm as a :class:`SubmitRecord`),
  :meth:`~SMSCSimulator.texts` (accepted messages to a number, reassembled),
  :attr:`~SMSCSimulator.counters`, :attr:`~SMSCSimulator.max_outstanding`
  (most submits one connection had without a written response),
  :meth:`~SMSCSimulator.wait_for`.

Receipts and MO messages go to a receiver/transceiver session of the same
system_id (the submitting session when it can receive); with none bound they
are queued and delivered when one binds, as an SMSC stores them.

``redeliver=True`` adds what a real SMSC does with a deliver_sm that was not
acknowledged: answered with an error status it is sent again after
``redeliver_delay`` seconds; still unanswered when its connection dies, it is
kept and delivered to the next bind (``counters["redelivered"]``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Self

from notifications.encoding import decode_gsm7, decode_ucs2, detect_encoding, encode_part

__all__ = ["ID_STYLES", "Behaviour", "SMSCSimulator", "SubmitRecord", "format_message_id"]

logger = logging.getLogger(__name__)

# -- independent codec ----------------------------------------------------------

_HDR = struct.Struct(">IIII")
_MAX_LEN = 70_000

CMD = {
    "generic_nack": 0x80000000,
    "bind_receiver": 0x00000001,
    "bind_transmitter": 0x00000002,
    "submit_sm": 0x00000004,
    "deliver_sm": 0x00000005,
    "unbind": 0x00000006,
    "bind_transceiver": 0x00000009,
    "enquire_link": 0x00000015,
}
NAMES = {value: name for name, value in CMD.items()}
NAMES.update({value | 0x80000000: f"{name}_resp" for name, value in CMD.items() if name != "generic_nack"})

ROK = 0x00
RINVCMDID = 0x03
RINVBNDSTS = 0x04
RALYBND = 0x05
RSYSERR = 0x08
RBINDFAIL = 0x0D
RINVPASWD = 0x0E
RTHROTTLED = 0x58

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
_STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}


class _Malformed(Exception):
    pass


def _pdu(command_id: int, sequence: int, body: bytes = b"", status: int = ROK) -> bytes:
    return _HDR.pack(16 + len(body), command_id, status, sequence) + body


def _cstr(value: str | bytes) -> bytes:
    return (value.encode("latin-1") if isinstance(value, str) else value) + b"\0"


class _Reader:
    """Cursor over a PDU body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _Malformed("body too short")
        self.pos += 1
        return self.data[self.pos - 1]

    def cstr(self, limit: int) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit)
        if end < 0:
            raise _Malformed(f"C-string longer than {limit}")
        value = self.data[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Malformed("body too short")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def tlvs(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        while self.pos < len(self.data):
            tag, length = struct.unpack(">HH", self.take(4))
            out[tag] = self.take(length)
        return out


def _deliver_sm_body(source: str, dest: str, esm_class: int, coding: int, short_message: bytes,
                     tlvs: Sequence[tuple[int, bytes]] = ()) -> bytes:
    parts = [
        b"\0",  # service_type
        bytes((1, 1)), _cstr(source),
        bytes((1, 1)), _cstr(dest),
        bytes((esm_class, 0, 0)),
        b"\0", b"\0",  # schedule_delivery_time, validity_period
        bytes((0, 0, coding, 0, len(short_message))), short_message,
    ]
    parts += [struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs]
    return b"".join(parts)


# -- message ids ------------------------------------------------------------------

ID_STYLES = ("decimal", "decimal_zeros", "hex_lower", "hex_upper", "hex_upper_zeros")
IdStyle = Literal["decimal", "decimal_zeros", "hex_lower", "hex_upper", "hex_upper_zeros"]


def format_message_id(number: int, style: str) -> str:
    """How the simulated SMSC writes message number ``number`` in ``style``."""
    if style == "decimal":
        return str(number)
    if style == "decimal_zeros":
        return f"{number:020d}"
    if style == "hex_lower":
        return f"{number:x}"
    if style == "hex_upper":
        return f"{number:X}"
    if style == "hex_upper_zeros":
        return f"{number:016X}"
    raise ValueError(f"unknown id style {style!r}; expected one of {ID_STYLES}")


# -- records and behaviour ----------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How the simulator answers a submit_sm (globally or for one destination)."""

    action: Literal["accept", "reject", "throttle"] = "accept"
    status: int = 0x0B  #: command_status for ``reject`` (default ESME_RINVDSTADR)
    resp_delay: float = 0.0  #: seconds before the submit_sm_resp is written
    dlr: Literal["none", "late", "early"] = "none"  #: only when registered_delivery asks for it
    dlr_delay: float = 0.05  #: for ``late``, and between the copies with ``dlr_twice``
    dlr_twice: bool = False
    dlr_stat: str = "DELIVRD"
    dlr_err: str = "000"
    dlr_date_digits: Literal[10, 12] = 10
    dlr_tlvs: bool = True  #: include receipted_message_id and message_state TLVs
    dlr_id_style: str | None = None  #: None: same style as the submit_sm_resp
    id_style: str | None = None  #: None: the simulator's ``id_style``


@dataclass(frozen=True)
class SubmitRecord:
    """One submit_sm as the simulator received it, with what it answered."""

    session: int
    system_id: str
    sequence: int
    source_addr: str
    source_ton: int
    source_npi: int
    destination_addr: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes  #: as sent, UDH included (message_payload when it was used)
    udh: bytes | None  #: UDH including its length octet, when esm_class has UDHI
    payload: bytes  #: user data without the UDH
    via_message_payload: bool
    tlvs: dict[int, bytes]
    status: int
    message_id: str | None
    number: int | None  #: the numeric message id
    received_at: datetime
    raw: bytes  #: the whole PDU

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(ref, total, seq) from an 8- or 16-bit concatenation IE."""
        if not self.udh:
            return None
        ies = self.udh[1:]
        pos = 0
        while pos + 2 <= len(ies):
            iei, length = ies[pos], ies[pos + 1]
            value = ies[pos + 2 : pos + 2 + length]
            if iei == 0x00 and length == 3:
                return value[0], value[1], value[2]
            if iei == 0x08 and length == 4:
                return (value[0] << 8) | value[1], value[2], value[3]
            pos += 2 + length
        return None

    @property
    def text(self) -> str:
        """This part's text alone; raises ValueError if the part is not valid on its own."""
        return _decode(self.payload, self.data_coding)


def _decode(payload: bytes, coding: int) -> str:
    if coding == 0x08:
        return decode_ucs2(payload)
    if coding == 0x00:
        return decode_gsm7(payload)
    return payload.decode("latin-1")


class _Session:
    """One ESME connection."""

    ids = itertools.count(1)

    def __init__(self, sim: SMSCSimulator, sock: socket.socket, peer: Any) -> None:
        self.id = next(self.ids)
        self.sim = sim
        self.sock = sock
        self.peer = peer
        self.write_lock = threading.Lock()
        self.system_id: str | None = None
        self.mode: str | None = None  # "trx", "tx", "rx"
        self.outstanding = 0
        self.sequence = itertools.count(1)
        self.closed = False
        self.thread = threading.Thread(target=self.run, name=f"smsc-session-{self.id}", daemon=True)

    @property
    def can_receive(self) -> bool:
        return self.mode in ("trx", "rx") and not self.closed

    def write(self, data: bytes, responses: int = 0) -> bool:
        """Write bytes; ``responses`` submit_sm_resp among them leave the outstanding count first."""
        with self.write_lock:
            if responses:
                with self.sim._lock:
                    self.outstanding -= responses
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.close()
                return False

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def run(self) -> None:
        buffer = bytearray()
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(262144)
                except OSError:
                    break
                if not data:
                    break
                buffer += data
                out: list[bytes] = []
                responses = 0
                offset = 0
                while len(buffer) - offset >= 16:
                    length, command_id, status, sequence = _HDR.unpack_from(buffer, offset)
                    if length < 16 or length > _MAX_LEN:
                        logger.warning("session %d: impossible command_length %d, closing", self.id, length)
                        return
                    if len(buffer) - offset < length:
                        break
                    raw = bytes(buffer[offset : offset + length])
                    offset += length
                    responses += self.sim._handle(self, command_id, status, sequence, raw, out)
                del buffer[:offset]
                if out:
                    self.write(b"".join(out), responses)
                elif responses:  # their bytes were already written (bind / unbind paths)
                    self.write(b"", responses)
        finally:
            self.close()
            self.sim._session_closed(self)


# -- the simulator ------------------------------------------------------------------


class SMSCSimulator:
    """SMPP 3.4 SMSC on 127.0.0.1 (port 0 picks a free one; see :attr:`port`)."""

    def __init__(
        self,
        system_id: str = "ispsms",
        password: str = "secret",
        *,
        accounts: Mapping[str, str] | None = None,
        id_style: str = "decimal",
        first_message_id: int = 0xA1B2C3,
        host: str = "127.0.0.1",
        port: int = 0,
        redeliver: bool = False,
        redeliver_delay: float = 0.5,
    ) -> None:
        format_message_id(1, id_style)
        self.redeliver = redeliver
        self.redeliver_delay = redeliver_delay
        self._unacked: dict[tuple[int, int], tuple[str, bytes]] = {}  # (session, sequence) -> (system_id, body)
        self.accounts: dict[str, str] = dict(accounts or {system_id: password})
        self.id_style = id_style
        self.host = host
        self.port = port
        self.default = Behaviour()
        self.per_destination: dict[str, Behaviour] = {}
        #: Read everything, answer nothing (a hung SMSC).
        self.silent = False
        self.counters: Counter[str] = Counter()
        self.submits: list[SubmitRecord] = []
        self.bind_attempts: list[tuple[str, str, int]] = []  # (command, system_id, status)
        self.deliver_resps: list[tuple[int, int]] = []  # (sequence, status) of deliver_sm_resp received
        self.max_outstanding = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._numbers = itertools.count(first_message_id)
        self._throttle_left = 0
        self._throttle_status = RTHROTTLED
        self._holding = False
        self._held: list[tuple[_Session, bytes]] = []
        self._sessions: dict[int, _Session] = {}
        self._queued: dict[str, list[bytes]] = {}  # system_id -> deliver_sm bodies waiting for a receiver
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._timer_cond = threading.Condition()
        self._running = False
        self._scheduler: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and start the threads; returns self."""
        self._running = True
        self._open_listener()
        self._scheduler = threading.Thread(target=self._run_scheduler, name="smsc-scheduler", daemon=True)
        self._scheduler.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the threads."""
        self._running = False
        self.close_listener()
        self.drop_connections()
        with self._timer_cond:
            self._timer_cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), name="smsc-accept", daemon=True)
        self._accept_thread.start()

    def close_listener(self) -> None:
        """Stop accepting: new connections are refused until :meth:`reopen_listener`."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None

    def reopen_listener(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self._open_listener()

    def drop_connections(self) -> int:
        """Close every ESME connection abruptly (no unbind); returns how many."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close()
        for session in sessions:
            if session.thread is not threading.current_thread():
                session.thread.join(5)
        return len(sessions)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, peer = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, sock, peer)
            with self._changed:
                self._sessions[session.id] = session
                self.counters["connections"] += 1
                self._changed.notify_all()
            session.thread.start()

    def _session_closed(self, session: _Session) -> None:
        with self._changed:
            for key in [k for k in self._unacked if k[0] == session.id]:
                system_id, body = self._unacked.pop(key)
                self._queued.setdefault(system_id, []).append(body)
                self.counters["redelivered"] += 1
            self._sessions.pop(session.id, None)
            self.counters["disconnects"] += 1
            self._changed.notify_all()

    # -- scheduler ----------------------------------------------------------------------

    def call_later(self, delay: float, func: Callable[[], None]) -> None:
        """Run ``func`` in the scheduler thread after ``delay`` seconds."""
        with self._timer_cond:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_ids), func))
            self._timer_cond.notify()

    def _run_scheduler(self) -> None:
        while True:
            with self._timer_cond:
                while self._running:
                    now = time.monotonic()
                    if self._timers and self._timers[0][0] <= now:
                        break
                    self._timer_cond.wait(self._timers[0][0] - now if self._timers else None)
                if not self._running:
                    return
                _, _, func = heapq.heappop(self._timers)
            try:
                func()
            except Exception:
                logger.exception("smsc scheduled task failed")

    # -- behaviour hooks ------------------------------------------------------------------

    def configure(self, dest: str | None = None, **changes: Any) -> Behaviour:
        """Change :class:`Behaviour` fields globally (``dest=None``) or for one destination."""
        with self._lock:
            if dest is None:
                self.default = replace(self.default, **changes)
                return self.default
            behaviour = replace(self.per_destination.get(dest, self.default), **changes)
            self.per_destination[dest] = behaviour
            return behaviour

    def reset_behaviour(self) -> None:
        """Back to accept-everything, no receipts, no throttling, responses not held."""
        with self._lock:
            self.default = Behaviour()
            self.per_destination.clear()
            self._throttle_left = 0
            self.silent = False
        self.release_responses()

    def throttle_next(self, count: int, status: int = RTHROTTLED) -> None:
        """Answer the next ``count`` submits (any destination) with ``status``."""
        with self._lock:
            self._throttle_left = count
            self._throttle_status = status

    def hold_responses(self) -> None:
        """Keep submit_sm_resp back until :meth:`release_responses`."""
        with self._lock:
            self._holding = True

    def release_responses(self) -> None:
        """Write every held response, in arrival order."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
        for session, data in held:
            session.write(data, 1)

    # -- inspection ---------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Submits received whose response is not written yet, over all connections."""
        with self._lock:
            return sum(s.outstanding for s in self._sessions.values())

    def bound_sessions(self) -> list[tuple[int, str | None, str | None]]:
        """(session id, system_id, mode) of live connections."""
        with self._lock:
            return [(s.id, s.system_id, s.mode) for s in self._sessions.values() if not s.closed]

    def submits_to(self, dest: str) -> list[SubmitRecord]:
        """Every submit_sm to ``dest`` (any status), in arrival order."""
        with self._lock:
            return [r for r in self.submits if r.destination_addr == dest]

    def texts(self, dest: str) -> list[str]:
        """Accepted messages to ``dest``: single parts decoded, multipart reassembled.

        Parts are joined as bytes and decoded once, as a handset does; a
        message with parts missing is left out.
        """
        singles: list[tuple[int, str]] = []
        groups: dict[tuple[str, int, int], dict[int, SubmitRecord]] = {}
        first: dict[tuple[str, int, int], int] = {}
        for index, record in enumerate(self.submits_to(dest)):
            if record.status != ROK:
                continue
            concat = record.concat
            if concat is None:
                singles.append((index, _decode(record.payload, record.data_coding)))
                continue
            key = (record.source_addr, concat[0], concat[1])
            groups.setdefault(key, {})[concat[2]] = record
            first.setdefault(key, index)
        for key, parts in groups.items():
            if len(parts) == key[2]:
                ordered = [parts[seq] for seq in sorted(parts)]
                payload = b"".join(part.payload for part in ordered)
                singles.append((first[key], _decode(payload, ordered[0].data_coding)))
        return [text for _, text in sorted(singles)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` is true (re-checked on every event and every 20 ms)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.02))
            return True

    def wait_bound(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``count`` sessions are bound."""
        return self.wait_for(lambda: sum(1 for _, _, mode in self.bound_sessions() if mode) >= count, timeout)

    # -- pushes -------------------------------------------------------------------------

    def push_mo(
        self,
        source: str,
        dest: str,
        text: str | None = None,
        *,
        parts: Sequence[str] | None = None,
        encoding: str | None = None,
        ref: int = 0x2A,
        ref16: bool = False,
        order: Sequence[int] | None = None,
        use_payload: bool = False,
        system_id: str | None = None,
    ) -> int:
        """Send a mobile-originated message to a bound ESME as deliver_sm.

        ``text`` goes as one part; ``parts`` as a concatenated message with a
        UDH (8-bit ``ref``, or 16-bit with ``ref16``), sent in ``order``
        (0-based part indexes, default in order). ``encoding`` 'gsm7' or
        'ucs2' (default: chosen from the text). Returns the number of
        deliver_sm queued or sent.
        """
        if (text is None) == (parts is None):
            raise ValueError("give text or parts")
        chunks = [text] if text is not None else list(parts or [])
        encoding = encoding or detect_encoding("".join(chunks))
        coding = 0x08 if encoding == "ucs2" else 0x00
        bodies = []
        total = len(chunks)
        for index in (order if order is not None else range(total)):
            payload = encode_part(chunks[index], encoding)
            esm_class = 0
            if parts is not None:
                if ref16:
                    udh = bytes((6, 0x08, 4, ref >> 8 & 0xFF, ref & 0xFF, total, index + 1))
                else:
                    udh = bytes((5, 0x00, 3, ref & 0xFF, total, index + 1))
                payload = udh + payload
                esm_class = 0x40
            if use_payload:
                body = _deliver_sm_body(source, dest, esm_class, coding, b"", [(TLV_MESSAGE_PAYLOAD, payload)])
            else:
                body = _deliver_sm_body(source, dest, esm_class, coding, payload)
            bodies.append(body)
        for body in bodies:
            self._deliver(system_id, None, body)
            with self._lock:
                self.counters["mo_sent"] += 1
        return len(bodies)

    def send_receipt(
        self,
        message_id: str,
        *,
        source: str = "8801700000000",
        dest: str = "ISP",
        stat: str = "DELIVRD",
        err: str = "000",
        date_digits: int = 10,
        tlvs: bool = True,
        text: str = "",
        system_id: str | None = None,
    ) -> None:
        """Send a delivery receipt for an arbitrary id (e.g. one never submitted)."""
        now = datetime.now(UTC)
        body = self._receipt_body(message_id, source, dest, stat, err, date_digits, tlvs, text, now, now)
        self._deliver(system_id, None, body)

    def send_enquire_link(self) -> int:
        """Send enquire_link on every bound connection; returns how many were sent."""
        sent = 0
        for session in self._live_sessions():
            if session.mode and session.write(_pdu(CMD["enquire_link"], next(session.sequence))):
                sent += 1
                with self._lock:
                    self.counters["enquire_link_sent"] += 1
        return sent

    def send_pdu(self, command_id: int, body: bytes = b"", *, status: int = ROK, sequence: int | None = None) -> int:
        """Send any PDU on every live connection; returns how many connections got it."""
        sent = 0
        for session in self._live_sessions():
            seq = sequence if sequence is not None else next(session.sequence)
            sent += session.write(_pdu(command_id, seq, body, status))
        return sent

    def send_raw(self, data: bytes) -> int:
        """Write raw bytes on every live connection."""
        return sum(session.write(data) for session in self._live_sessions())

    def send_unbind(self) -> int:
        """Ask every bound ESME to unbind."""
        return self.send_pdu(CMD["unbind"])

    def _live_sessions(self) -> list[_Session]:
        with self._lock:
            return [s for s in self._sessions.values() if not s.closed]

    def _deliver(self, system_id: str | None, preferred: _Session | None, body: bytes) -> None:
        """deliver_sm to a receiving session of ``system_id`` (any when None), or queue it."""
        with self._lock:
            target = preferred if preferred is not None and preferred.can_receive else None
            if target is None:
                for session in self._sessions.values():
                    if session.can_receive and (system_id is None or session.system_id == system_id):
                        target = session
                        break
            if target is None:
                self._queued.setdefault(system_id or "", []).append(body)
                return
        if not target.write(self._deliver_pdu(target, body)) and not self.redeliver:
            with self._lock:  # with redeliver, _session_closed has kept it
                self._queued.setdefault(system_id or "", []).append(body)

    def _deliver_pdu(self, session: _Session, body: bytes) -> bytes:
        """A deliver_sm for ``session``; with ``redeliver`` it is remembered until answered."""
        sequence = next(session.sequence)
        if self.redeliver:
            with self._lock:
                self._unacked[(session.id, sequence)] = (session.system_id or "", body)
        return _pdu(CMD["deliver_sm"], sequence, body)

    def _deliver_resp(self, session: _Session, sequence: int, status: int) -> None:
        if not self.redeliver:
            return
        with self._lock:
            entry = self._unacked.pop((session.id, sequence), None)
        if entry is not None and status != ROK:
            with self._lock:
                self.counters["redelivered"] += 1
            self.call_later(self.redeliver_delay, lambda: self._deliver(entry[0] or None, None, entry[1]))

    def _flush_queued(self, session: _Session) -> None:
        with self._lock:
            bodies = self._queued.pop(session.system_id or "", []) + self._queued.pop("", [])
        for body in bodies:
            session.write(self._deliver_pdu(session, body))

    def _receipt_body(self, message_id: str, source: str, dest: str, stat: str, err: str, digits: int,
                      tlvs: bool, text: str, submitted: datetime, done: datetime) -> bytes:
        fmt = "%y%m%d%H%M%S" if digits == 12 else "%y%m%d%H%M"
        dlvrd = "001" if stat == "DELIVRD" else "000"
        snippet = text[:20].encode("ascii", errors="replace").decode("ascii")
        receipt = (
            f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{submitted.strftime(fmt)} "
            f"done date:{done.strftime(fmt)} stat:{stat} err:{err} text:{snippet}"
        ).encode("ascii")
        options: list[tuple[int, bytes]] = []
        if tlvs:
            options = [(TLV_RECEIPTED_MESSAGE_ID, _cstr(message_id)),
                       (TLV_MESSAGE_STATE, bytes((_STATES.get(stat, 7),)))]
        return _deliver_sm_body(source, dest, 0x04, 0x00, receipt, options)

    # -- request handling (session threads) -------------------------------------------------

    def _handle(self, session: _Session, command_id: int, status: int, sequence: int, raw: bytes,
                out: list[bytes]) -> int:
        """Answer one PDU into ``out``; returns 1 if that includes a submit_sm_resp."""
        name = NAMES.get(command_id, "unknown")
        with self._changed:
            self.counters[name] += 1
            self._changed.notify_all()
        if self.silent:
            return 0
        body = raw[16:]
        if command_id in (CMD["bind_transceiver"], CMD["bind_transmitter"], CMD["bind_receiver"]):
            # Written at once so stored receipts / MO messages can follow the bind_resp.
            session.write(b"".join(out) + self._bind(session, command_id, sequence, body))
            out.clear()
            if session.can_receive:
                self._flush_queued(session)
        elif command_id == CMD["submit_sm"]:
            if session.mode not in ("trx", "tx"):
                out.append(_pdu(command_id | 0x80000000, sequence, status=RINVBNDSTS))
            else:
                return self._submit(session, sequence, raw, out)
        elif command_id == CMD["enquire_link"]:
            out.append(_pdu(command_id | 0x80000000, sequence))
        elif command_id == CMD["unbind"]:
            session.write(b"".join(out) + _pdu(command_id | 0x80000000, sequence))
            out.clear()
            session.close()
        elif command_id == CMD["deliver_sm"] | 0x80000000:
            with self._changed:
                self.deliver_resps.append((sequence, status))
                self._changed.notify_all()
            self._deliver_resp(session, sequence, status)
        elif command_id & 0x80000000:
            pass  # enquire_link_resp, unbind_resp, generic_nack: counted above
        else:
            out.append(_pdu(CMD["generic_nack"], sequence, status=RINVCMDID))
        return 0

    def _bind(self, session: _Session, command_id: int, sequence: int, body: bytes) -> bytes:
        resp_id = command_id | 0x80000000
        try:
            reader = _Reader(body)
            system_id = reader.cstr(16)
            password = reader.cstr(9)
        except _Malformed:
            return _pdu(resp_id, sequence, status=RSYSERR)
        if session.mode is not None:
            result = RALYBND
        elif system_id not in self.accounts:
            result = RBINDFAIL
        elif self.accounts[system_id] != password:
            result = RINVPASWD
        else:
            result = ROK
        with self._changed:
            self.bind_attempts.append((NAMES[command_id], system_id, result))
            self.counters["bind_ok" if result == ROK else "bind_failed"] += 1
            if result == ROK:
                session.system_id = system_id
                session.mode = {CMD["bind_transceiver"]: "trx", CMD["bind_transmitter"]: "tx"}.get(command_id, "rx")
            self._changed.notify_all()
        if result != ROK:
            return _pdu(resp_id, sequence, status=result)
        return _pdu(resp_id, sequence, _cstr("SMSCSIM"))

    def _submit(self, session: _Session, sequence: int, raw: bytes, out: list[bytes]) -> int:
        try:
            r = _Reader(raw[16:])
            r.cstr(6)
            source_ton, source_npi, source = r.byte(), r.byte(), r.cstr(21)
            dest_ton, dest_npi, dest = r.byte(), r.byte(), r.cstr(21)
            esm_class = r.byte()
            r.byte(), r.byte()  # protocol_id, priority_flag
            r.cstr(17), r.cstr(17)  # schedule_delivery_time, validity_period
            registered_delivery = r.byte()
            r.byte()  # replace_if_present_flag
            coding = r.byte()
            r.byte()  # sm_default_msg_id
            short_message = r.take(r.byte())
            tlvs = r.tlvs()
        except (_Malformed, struct.error):
            with self._lock:
                self.counters["malformed"] += 1
            out.append(_pdu(0x80000004, sequence, status=RSYSERR))
            return 0
        via_payload = not short_message and TLV_MESSAGE_PAYLOAD in tlvs
        if via_payload:
            short_message = tlvs[TLV_MESSAGE_PAYLOAD]
        udh, payload = None, short_message
        if esm_class & 0x40 and short_message:
            udh, payload = short_message[: short_message[0] + 1], short_message[short_message[0] + 1 :]
        with self._changed:
            behaviour = self.per_destination.get(dest, self.default)
            if self._throttle_left > 0:
                self._throttle_left -= 1
                result = self._throttle_status
            elif behaviour.action == "reject":
                result = behaviour.status
            elif behaviour.action == "throttle":
                result = RTHROTTLED
            else:
                result = ROK
            number = next(self._numbers) if result == ROK else None
            style = behaviour.id_style or self.id_style
            message_id = format_message_id(number, style) if number is not None else None
            record = SubmitRecord(
                session.id, session.system_id or "", sequence, source, source_ton, source_npi, dest, dest_ton,
                dest_npi, esm_class, coding, registered_delivery, short_message, udh, payload, via_payload, tlvs,
                result, message_id, number, datetime.now(UTC), raw,
            )
            self.submits.append(record)
            self.counters[{ROK: "submit_ok", RTHROTTLED: "submit_throttled"}.get(result, "submit_rejected")] += 1
            session.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, session.outstanding)
            holding = self._holding
            self._changed.notify_all()

        resp = _pdu(0x80000004, sequence, _cstr(message_id) if message_id is not None else b"", result)
        wants_dlr = result == ROK and registered_delivery & 0x03 and behaviour.dlr != "none"
        if wants_dlr and behaviour.dlr == "early":
            self._send_dlr(session, record, behaviour, out)
        if holding:
            with self._lock:
                self._held.append((session, resp))
            handled = 0
        elif behaviour.resp_delay > 0:
            self.call_later(behaviour.resp_delay, lambda: session.write(resp, 1))
            handled = 0
        else:
            out.append(resp)
            handled = 1
        if wants_dlr and behaviour.dlr == "late":
            self.call_later(behaviour.dlr_delay, lambda: self._send_dlr(session, record, behaviour, None))
        if wants_dlr and behaviour.dlr_twice:
            self.call_later(behaviour.dlr_delay * 2, lambda: self._send_dlr(session, record, behaviour, None))
        return handled

    def _send_dlr(self, session: _Session, record: SubmitRecord, behaviour: Behaviour, out: list[bytes] | None) -> None:
        assert record.number is not None
        style = behaviour.dlr_id_style or behaviour.id_style or self.id_style
        try:
            text = _decode(record.payload, record.data_coding)
        except ValueError:
            text = ""
        body = self._receipt_body(
            format_message_id(record.number, style), record.destination_addr, record.source_addr,
            behaviour.dlr_stat, behaviour.dlr_err, behaviour.dlr_date_digits, behaviour.dlr_tlvs, text,
            record.received_at, datetime.now(UTC),
        )
        with self._lock:
            self.counters["dlr_sent"] += 1
        if out is not None and session.can_receive:
            out.append(self._deliver_pdu(session, body))
        else:
            self._deliver(session.system_id, session, body)

