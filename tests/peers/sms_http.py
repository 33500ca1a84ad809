"""An HTTP bulk-SMS API simulator (the ``bd_bulk`` profile's shape) on 127.0.0.1, for tests and benches.

Written from the API shape, not from ``notifications.providers.http``: it is a
real HTTP/1.1 server (keep-alive, ``ThreadingHTTPServer``, port 0 picks a free
one) that answers like a Bangladeshi-style bulk-SMS API:

* ``POST`` (or ``GET`` with a query string) ``/api/v3/send-sms`` with a JSON body ``api_token, sid, msisdn, sms,
  csms_id``: ``{"status", "status_code", "error_message", "smsinfo": [{...,
  "reference_id"}]}``; codes: 200 accepted, 4001 bad token (HTTP 401), 4010
  missing field (HTTP 400), 4020 invalid / rejected number, 4022 duplicate
  ``csms_id`` (already accepted: answered with the first reference id and not
  sent again), 4025 insufficient balance, 4029 throttled (HTTP 429, or 200
  with ``throttle_code``), HTTP 503 for ``error5xx``;
* ``GET /api/v3/balance?api_token=...``: ``{"status_code": 200, "balance": "..."}``;
  every accepted message costs ``price`` per part (parts counted by
  :mod:`notifications.encoding`, as an operator would);
* delivery reports and incoming SMS are POSTed as JSON to ``callback_url``:
  ``late`` (after ``dlr_delay``), ``early`` (before the send request is
  answered), ``dlr_twice``; :meth:`HttpSmsSimulator.push_dlr` /
  :meth:`~HttpSmsSimulator.push_mo` push any report or message by hand.

Message ids are numbers written in ``id_style`` in answers and in
``dlr_id_style`` in delivery reports (e.g. ``000000000A1B2C3`` vs ``a1b2c3``),
as real providers do. Everything received is recorded (:attr:`requests`,
:attr:`messages`, :attr:`callbacks`).

:class:`WebhookReceiver` is the other side of the callbacks: a small HTTP
server that hands each JSON (or form) body to a function and answers 200, or
400 with the error when the function raises ValueError.
"""
from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from notifications.encoding import detect_encoding, segment

__all__ = ["Behaviour", "HttpSmsSimulator", "RequestRecord", "SentMessage", "WebhookReceiver", "format_id"]

DHAKA = timezone(timedelta(hours=6))
SEND_PATH = "/api/v3/send-sms"
BALANCE_PATH = "/api/v3/balance"


def format_id(number: int, style: str) -> str:
    """Message number ``number`` written in ``style``."""
    styles = {"decimal": f"{number}", "decimal_zeros": f"{number:012d}", "hex_lower": f"{number:x}",
              "hex_upper": f"{number:X}", "hex_upper_zeros": f"{number:016X}"}
    try:
        return styles[style]
    except KeyError:
        raise ValueError(f"unknown id style {style!r}; expected one of {sorted(styles)}") from None


@dataclass(frozen=True)
class Behaviour:
    """How a send request is answered (globally or for one msisdn)."""

    action: Literal["accept", "reject", "throttle", "throttle_code", "error5xx", "provider_error"] = "accept"
    reject_code: int = 4020
    reject_message: str = "Invalid MSISDN or number blocked"
    delay: float = 0.0  #: seconds before answering (longer than the client's timeout: no answer)
    dlr: Literal["none", "late", "early"] = "none"
    dlr_delay: float = 0.05
    dlr_twice: bool = False
    dlr_status: str = "Delivered"
    dlr_error: str = "0"


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as received, with the answer."""

    method: str
    path: str
    headers: Mapping[str, str]
    params: Mapping[str, Any]
    status: int
    answer: Mapping[str, Any]


@dataclass(frozen=True)
class SentMessage:
    """One message the simulated provider accepted (and would send)."""

    number: int
    reference_id: str
    csms_id: str
    msisdn: str
    sid: str
    text: str
    parts: int


@dataclass
class _State:
    records: list[RequestRecord] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    by_csms: dict[str, SentMessage] = field(default_factory=dict)
    callbacks: list[tuple[dict[str, Any], int | str]] = field(default_factory=list)


class HttpSmsSimulator:
    """The bulk-SMS HTTP API on 127.0.0.1:``port`` (0 = a free port; see :attr:`port`, :attr:`base_url`)."""

    def __init__(self, api_token: str = "test-token", *, balance: Decimal | str = "1000.00",
                 price: Decimal | str = "0.25", id_style: str = "hex_upper_zeros", dlr_id_style: str = "hex_lower",
                 first_id: int = 0xA1B2C3, callback_url: str | None = None, port: int = 0) -> None:
        format_id(1, id_style)
        format_id(1, dlr_id_style)
        self.api_token = api_token
        self.balance = Decimal(balance)
        self.price = Decimal(price)
        self.id_style = id_style
        self.dlr_id_style = dlr_id_style
        self.callback_url = callback_url
        self.default = Behaviour()
        self.per_destination: dict[str, Behaviour] = {}
        self._port = port
        self._numbers = itertools.count(first_id)
        self._throttle_left = 0
        self._delay_left: list[float] = []
        self._active = 0
        #: Most send requests being handled at the same time.
        self.max_concurrent = 0
        self._lock = threading.RLock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sms-http-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- test hooks ------------------------------------------------------------------------------

    def configure(self, dest: str | None = None, **changes: Any) -> Behaviour:
        """Change :class:`Behaviour` fields globally (``dest=None``) or for one msisdn."""
        with self._lock:
            if dest is None:
                self.default = replace(self.default, **changes)
                return self.default
            self.per_destination[dest] = replace(self.per_destination.get(dest, self.default), **changes)
            return self.per_destination[dest]

    def throttle_next(self, count: int) -> None:
        """Answer the next ``count`` send requests with HTTP 429 / 4029."""
        with self._lock:
            self._throttle_left = count

    def delay_next(self, count: int, seconds: float) -> None:
        """Hold each of the next ``count`` send requests ``seconds`` before handling it."""
        with self._lock:
            self._delay_left = [seconds] * count

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._state.records)

    @property
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._state.messages)

    @property
    def callbacks(self) -> list[tuple[dict[str, Any], int | str]]:
        """Every webhook pushed: (payload, HTTP status of the receiver's answer or the error)."""
        with self._lock:
            return list(self._state.callbacks)

    def texts(self, msisdn: str) -> list[str]:
        return [m.text for m in self.messages if m.msisdn == msisdn]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def push_dlr(self, reference_id: str, status: str = "Delivered", *, csms_id: str | None = None,
                 msisdn: str = "", error_code: str = "0", done_at: str | None = None) -> int | str:
        """POST a delivery report to ``callback_url``; returns the receiver's HTTP status (or the error)."""
        payload = {"type": "dlr", "reference_id": reference_id, "csms_id": csms_id, "msisdn": msisdn,
                   "status": status, "error_code": error_code,
                   "done_at": done_at or datetime.now(DHAKA).strftime("%Y-%m-%d %H:%M:%S")}
        return self._post_callback(payload)

    def push_mo(self, msisdn: str, to: str, text: str) -> int | str:
        """POST an incoming SMS to ``callback_url``."""
        payload = {"type": "mo", "msisdn": msisdn, "to": to, "text": text,
                   "received_at": datetime.now(DHAKA).strftime("%Y-%m-%d %H:%M:%S")}
        return self._post_callback(payload)

    # -- internals ---------------------------------------------------------------------------------

    def _post_callback(self, payload: dict[str, Any]) -> int | str:
        url = self.callback_url
        if not url:
            raise RuntimeError("no callback_url configured")
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        try:
            conn.request("POST", parts.path or "/", body=json.dumps(payload).encode(),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            outcome: int | str = response.status
        except OSError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        with self._lock:
            self._state.callbacks.append((payload, outcome))
        return outcome

    def _later(self, delay: float, func: Callable[[], Any]) -> None:
        timer = threading.Timer(delay, func)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _record(self, method: str, path: str, headers: Mapping[str, str], params: Mapping[str, Any], status: int,
                answer: Mapping[str, Any]) -> None:
        with self._lock:
            self._state.records.append(RequestRecord(method, path, dict(headers), dict(params), status, answer))

    def handle(self, method: str, path: str, params: Mapping[str, Any],
               headers: Mapping[str, str]) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        """(HTTP status, JSON answer, callback to run before answering)."""
        if path == BALANCE_PATH and method == "GET":
            if params.get("api_token") != self.api_token:
                return 401, {"status": "FAILED", "status_code": 4001, "error_message": "Invalid API token"}, None
            with self._lock:
                return 200, {"status": "SUCCESS", "status_code": 200, "balance": f"{self.balance:.2f}"}, None
        if path != SEND_PATH:
            return 404, {"status": "FAILED", "status_code": 404, "error_message": "no such endpoint"}, None
        if params.get("api_token") != self.api_token:
            return 401, {"status": "FAILED", "status_code": 4001, "error_message": "Invalid API token"}, None
        missing = [key for key in ("sid", "msisdn", "sms", "csms_id") if not params.get(key)]
        if missing:
            return 400, _failed(4010, f"missing field(s): {', '.join(missing)}"), None
        msisdn, csms_id, text = str(params["msisdn"]), str(params["csms_id"]), str(params["sms"])
        with self._lock:
            behaviour = self.per_destination.get(msisdn, self.default)
            throttled = self._throttle_left > 0
            if throttled:
                self._throttle_left -= 1
            delay = behaviour.delay + (self._delay_left.pop() if self._delay_left else 0.0)
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            if delay:
                time.sleep(delay)
            return self._send(behaviour, throttled, msisdn, csms_id, text, params)
        finally:
            with self._lock:
                self._active -= 1

    def _send(self, behaviour: Behaviour, throttled: bool, msisdn: str, csms_id: str, text: str,
              params: Mapping[str, Any]) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        if throttled or behaviour.action == "throttle":
            return 429, _failed(4029, "Too many requests"), None
        if behaviour.action == "throttle_code":
            return 200, _failed(4029, "Rate limit exceeded, try later"), None
        if behaviour.action == "error5xx":
            return 503, {"status": "FAILED", "status_code": 503, "error_message": "Service unavailable"}, None
        if behaviour.action == "provider_error":
            return 200, _failed(4025, "Insufficient balance"), None
        if not (msisdn.isdigit() and len(msisdn) == 13 and msisdn.startswith("8801")):
            return 200, _failed(4020, f"Invalid MSISDN {msisdn}"), None
        if behaviour.action == "reject":
            return 200, _failed(behaviour.reject_code, behaviour.reject_message), None
        try:
            parts = segment(text).count
        except ValueError as exc:
            return 200, _failed(4021, f"Invalid message: {exc}"), None
        with self._lock:
            earlier = self._state.by_csms.get(csms_id)
            if earlier is not None:
                return 200, {"status": "FAILED", "status_code": 4022, "error_message": "Duplicate csms_id",
                             "smsinfo": [_info(earlier, "Duplicate")]}, None
            cost = self.price * parts
            if cost > self.balance:
                return 200, _failed(4025, "Insufficient balance"), None
            self.balance -= cost
            number = next(self._numbers)
            message = SentMessage(number, format_id(number, self.id_style), csms_id, msisdn, str(params["sid"]),
                                  text, parts)
            self._state.messages.append(message)
            self._state.by_csms[csms_id] = message
        answer = {"status": "SUCCESS", "status_code": 200, "error_message": "", "smsinfo": [_info(message, "Success")]}
        before = None
        if behaviour.dlr != "none" and self.callback_url:
            def report() -> None:
                self.push_dlr(format_id(number, self.dlr_id_style), behaviour.dlr_status, csms_id=csms_id,
                              msisdn=msisdn, error_code=behaviour.dlr_error)

            if behaviour.dlr == "early":
                before = report
                if behaviour.dlr_twice:
                    self._later(behaviour.dlr_delay, report)
            else:
                self._later(behaviour.dlr_delay, report)
                if behaviour.dlr_twice:
                    self._later(2 * behaviour.dlr_delay + 0.05, report)
        return 200, answer, before


def _failed(code: int, message: str) -> dict[str, Any]:
    return {"status": "FAILED", "status_code": code, "error_message": message, "smsinfo": []}


def _info(message: SentMessage, status: str) -> dict[str, Any]:
    return {"sms_status": "SUCCESS" if status != "Duplicate" else "DUPLICATE", "status_message": status,
            "msisdn": message.msisdn, "sms_type": "BN" if detect_encoding(message.text) == "ucs2" else "EN",
            "sms_body": message.text, "csms_id": message.csms_id, "reference_id": message.reference_id}


def _read_params(handler: BaseHTTPRequestHandler) -> dict[str, Any]:
    url = urlsplit(handler.path)
    params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
    length = int(handler.headers.get("Content-Length") or 0)
    if length:
        raw = handler.rfile.read(length)
        kind = handler.headers.get("Content-Type", "")
        if "json" in kind:
            body = json.loads(raw.decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            params.update(body)
        else:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode("utf-8")).items()})
    return params


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1  # status line, headers and body leave in one write (flushed after each request)
    simulator: HttpSmsSimulator

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, answer: Mapping[str, Any]) -> None:
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        path = urlsplit(self.path).path
        try:
            params = _read_params(self)
        except ValueError as exc:
            self._answer(400, _failed(4010, f"bad request body: {exc}"))
            return
        status, answer, before = self.simulator.handle(self.command, path, params, self.headers)
        self.simulator._record(self.command, path, dict(self.headers), params, status, answer)
        if before is not None:
            before()
        self._answer(status, answer)

    do_GET = _serve
    do_POST = _serve


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1: each POSTed JSON / form body goes to ``handler(data)``."""

    def __init__(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        self.handler = handler
        self.received: list[dict[str, Any]] = []
        self.errors: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = -1

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                status, answer = 200, {"ok": True}
                try:
                    data = _read_params(self)
                    receiver.received.append(data)
                    receiver.handler(data)
                except ValueError as exc:
                    receiver.errors.append(str(exc))
                    status, answer = 400, {"ok": False, "error": str(exc)}
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sms-webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/sms/callback"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
