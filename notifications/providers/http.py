"""Generic HTTP SMS route (kind ``"http"``) and the profiles that configure it.

One :class:`HttpProvider` is one HTTP SMS API: where to send (``url``,
``method``, ``body``: ``query`` / ``form`` / ``json``), what to send
(``params``, a template whose string values may hold placeholders), how to
authenticate (credentials in the params, ``basic`` or ``bearer``), how to read
the answer (``response``: JSON paths or regexes for the status code, message
id and error text, and which codes mean success / throttled / provider-level
failure), how to ask for the balance and how to read the webhooks the API
pushes (``callback``). A ``profile`` (see :data:`PROFILES`) supplies all of
that for a known API shape; settings given next to it override it key by key.

Placeholders in ``params`` values: ``{to}`` (E.164 digits), ``{from}`` (sender
id), ``{text}``, ``{ref}`` (the client reference: ``str(ref)``, or
``"<ref>-<part>"`` when sending per part), ``{part}``, ``{parts}`` and every
key of ``credentials``. An unknown placeholder is refused when the provider
is built.

Threading and speed
-------------------
:meth:`HttpProvider.submit` completes in the calling thread: its futures are
already resolved when it returns, and a provider that cannot take the message
raises :class:`ProviderUnavailable` (so failover happens before anything was
sent). Throughput comes from calling it from several threads: every thread
keeps its own keep-alive ``http.client`` connection (checked for a close by
the server before it is reused). ``window`` caps the requests in flight across
threads and ``max_rate``/``burst`` paces them with the SMPP layer's
:class:`~notifications.smpp.TokenBucket`.

Outcomes of one request
-----------------------
* connection refused / failed before the request was written, HTTP 5xx,
  401/403, or a status code in ``response.unavailable`` (bad key, no balance,
  IP not allowed...): :class:`ProviderUnavailable`; the provider then reports
  ``available`` False for ``recheck_after`` seconds;
* HTTP 429 or a code in ``response.temporary``: TEMPORARY (retry later);
* a code in ``response.success`` (or ``response.duplicate``: the client
  reference was already accepted, the provider did not send it again):
  ACCEPTED with the provider's message id;
* any other code: PERMANENT with the provider's code and error text;
* no answer (read timeout, connection dropped after the request was written)
  or a 2xx answer that cannot be read: UNKNOWN: the message may be live.
  Where the provider deduplicates the client reference (``dedup``: true) the
  request is repeated once on a fresh connection first, which cannot send it
  twice.

Segmentation (per profile, ``split``)
-------------------------------------
``"message"`` (default): the whole text goes in one request (the provider
concatenates); the text is still segmented with :mod:`notifications.encoding`
(refusing what needs too many parts) and one SubmitResult is reported per
part, all with the request's outcome and message id, because SMS are charged
per part. ``"part"``: one request per part, each part sent as its own SMS
with the reference ``<ref>-<n>``; for APIs that only take single-part text.
"""
from __future__ import annotations

import base64
import copy
import http.client
import json
import logging
import re
import select
import socket
import string
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifications import dlr
from notifications.encoding import detect_encoding, segment
from notifications.smpp import (
    DeliveryReceipt,
    IncomingMessage,
    Outcome,
    SubmitResult,
    TokenBucket,
    destination_address,
    normalise_message_id,
    source_address,
)

from .base import ProviderConfigError, ProviderError, ProviderUnavailable, SmsProvider

logger = logging.getLogger(__name__)

_MESSAGE_STATE_OF_STAT: Final = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5,
                                 "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}

#: Known API shapes. ``bd_bulk`` is modelled on the common Bangladeshi bulk-SMS
#: HTTP APIs (API token + sender id + number + message, a JSON answer with a
#: status code and a message id, a client-side ``csms_id`` the provider
#: deduplicates, a balance endpoint, JSON webhooks); it is not any vendor's
#: exact API: check a real provider's field names and codes and override them.
PROFILES: Final[Mapping[str, Mapping[str, Any]]] = {
    "bd_bulk": {
        "url": "{base_url}/api/v3/send-sms",
        "method": "POST",
        "body": "json",
        "params": {"api_token": "{api_token}", "sid": "{from}", "msisdn": "{to}", "sms": "{text}",
                   "csms_id": "{ref}"},
        "auth": "params",
        "split": "message",
        "dedup": True,
        "id_rule": "lower+strip_zeros",
        "response": {
            "format": "json",
            "status": "status_code",
            "message_id": "smsinfo.0.reference_id",
            "error": "error_message",
            "success": ["200"],
            "duplicate": ["4022"],
            "temporary": ["4029"],
            "unavailable": ["4001", "4003", "4010", "4025", "4030"],
        },
        "balance": {
            "url": "{base_url}/api/v3/balance",
            "method": "GET",
            "params": {"api_token": "{api_token}"},
            "path": "balance",
        },
        "callback": {
            "type": "type",
            "mo_value": "mo",
            "message_id": "reference_id",
            "ref": "csms_id",
            "status": "status",
            "error": "error_code",
            "msisdn": "msisdn",
            "done_date": "done_at",
            "timezone": "Asia/Dhaka",
            "mo_from": "msisdn",
            "mo_to": "to",
            "mo_text": "text",
            "states": {"Pending": "sent", "Sent": "sent", "Delivered": "delivered", "Undelivered": "undelivered",
                       "Failed": "undelivered", "Expired": "expired", "Rejected": "rejected"},
        },
    },
}

_TOP_KEYS: Final = frozenset({
    "profile", "base_url", "url", "method", "body", "params", "headers", "credentials", "auth", "timeout",
    "connect_timeout", "response", "split", "dedup", "id_rule", "balance", "callback", "window", "max_rate",
    "burst", "recheck_after", "window_wait",
})
_RESPONSE_KEYS: Final = frozenset({"format", "status", "message_id", "error", "success", "duplicate", "temporary",
                                   "unavailable"})
_BALANCE_KEYS: Final = frozenset({"url", "method", "params", "path"})
_CALLBACK_KEYS: Final = frozenset({"type", "mo_value", "message_id", "ref", "status", "error", "msisdn", "done_date",
                                   "timezone", "mo_from", "mo_to", "mo_text", "states"})
_MESSAGE_FIELDS: Final = frozenset({"to", "from", "text", "ref", "part", "parts"})


@dataclass(frozen=True, slots=True)
class HttpReceipt(DeliveryReceipt):
    """A delivery receipt from an HTTP webhook; ``client_ref`` is the reference we sent, when echoed."""

    client_ref: str | None = None


@dataclass(frozen=True)
class ResponseRule:
    """How to read the answer to a send request."""

    format: str = "json"  #: "json": ``status`` etc. are dotted paths; "text": regexes with one group
    status: str | None = None  #: None: HTTP 2xx is success
    message_id: str | None = None
    error: str | None = None
    success: frozenset[str] = frozenset()
    duplicate: frozenset[str] = frozenset()
    temporary: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()

    def extract(self, parsed: Any, expr: str | None) -> Any:
        if expr is None or parsed is None:
            return None
        if self.format == "text":
            match = re.search(expr, parsed)
            return match.group(1) if match else None
        return json_path(parsed, expr)


def json_path(document: Any, path: str) -> Any:
    """``a.b.0.c`` in a parsed JSON document; None where any step is missing."""
    value = document
    for step in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.lstrip("-").isdigit():
            index = int(step)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


class _NotSent(Exception):
    """The request did not reach the provider (nothing can have been accepted)."""


class _NoAnswer(Exception):
    """The request was written but no answer was read: it may have been accepted."""


class _OneWrite:
    """http.client writes the header block and the body with two ``send`` calls: two packets and two
    wake-ups of the peer per request. Sending them in one halves that (and never meets Nagle's delay)."""

    _buffer: list[bytes]

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            head = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(head + message_body)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


@dataclass(slots=True)
class _Conn:
    conn: http.client.HTTPConnection
    used: bool = False


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "params":
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ProviderConfigError(f"bad template {template!r}: {exc}") from exc


class _Values(dict):
    def __missing__(self, key: str) -> str:
        raise ProviderConfigError(f"placeholder {{{key}}} has no value")


class HttpProvider(SmsProvider):
    """An HTTP SMS API configured by a profile and/or explicit settings (see the module docstring)."""

    kind = "http"

    def __init__(self, name: str, settings: Mapping[str, Any], **handlers: Any) -> None:
        super().__init__(name, settings, **handlers)
        config = dict(settings)
        profile = config.get("profile")
        if profile is not None:
            if profile not in PROFILES:
                raise ProviderConfigError(f"unknown HTTP profile {profile!r} (known: {', '.join(sorted(PROFILES))})")
            config = _merge(PROFILES[profile], config)
        unknown = sorted(set(config) - _TOP_KEYS)
        if unknown:
            raise ProviderConfigError(f"unknown HTTP setting(s): {', '.join(unknown)}")
        self.config = config
        self.credentials: dict[str, str] = {str(k): str(v) for k, v in (config.get("credentials") or {}).items()}
        if "base_url" in config:
            self.credentials.setdefault("base_url", str(config["base_url"]).rstrip("/"))
        self.url = self._url(config.get("url"), "url")
        self.method = str(config.get("method", "POST")).upper()
        if self.method not in ("GET", "POST"):
            raise ProviderConfigError(f"method must be GET or POST, not {self.method!r}")
        self.body = config.get("body", "json" if self.method == "POST" else "query")
        if self.body not in ("query", "form", "json") or (self.method == "GET" and self.body != "query"):
            raise ProviderConfigError(f"body must be query, form or json (GET: query), not {self.body!r}")
        self.params: dict[str, Any] = dict(config.get("params") or {})
        self._check_templates(self.params, _MESSAGE_FIELDS, "params")
        self.headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        self.auth = config.get("auth", "params")
        if self.auth not in ("params", "basic", "bearer"):
            raise ProviderConfigError(f"auth must be params, basic or bearer, not {self.auth!r}")
        self._auth_header = self._authorization()
        self.timeout = self._positive(config.get("timeout", 15.0), "timeout")
        self.connect_timeout = self._positive(config.get("connect_timeout", 5.0), "connect_timeout")
        self.recheck_after = float(config.get("recheck_after", 10.0))
        self.window_wait = self._positive(config.get("window_wait", 30.0), "window_wait")
        self.split = config.get("split", "message")
        if self.split not in ("message", "part"):
            raise ProviderConfigError(f"split must be 'message' or 'part', not {self.split!r}")
        self.dedup = bool(config.get("dedup", False))
        self.id_rule = str(config.get("id_rule", "as_is"))
        try:
            normalise_message_id("0", self.id_rule)
        except ValueError as exc:
            raise ProviderConfigError(str(exc)) from exc
        self.response = self._response_rule(config.get("response") or {})
        self.balance_rule = self._balance_rule(config.get("balance"))
        self.callback = dict(config.get("callback") or {})
        unknown = sorted(set(self.callback) - _CALLBACK_KEYS)
        if unknown:
            raise ProviderConfigError(f"unknown callback setting(s): {', '.join(unknown)}")
        try:
            self._callback_zone = ZoneInfo(self.callback.get("timezone", "UTC"))
            self._callback_states = {str(k): dlr.State(v) for k, v in (self.callback.get("states") or {}).items()}
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ProviderConfigError(f"bad callback setting: {exc}") from exc
        window = int(config.get("window", 10))
        if window < 1:
            raise ProviderConfigError("window must be >= 1")
        self.window = window
        self._slots = threading.BoundedSemaphore(window)
        max_rate = config.get("max_rate")
        try:
            self._bucket = TokenBucket(float(max_rate), config.get("burst")) if max_rate is not None else None
        except ValueError as exc:
            raise ProviderConfigError(f"max_rate: {exc}") from exc
        self._local = threading.local()
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._requests = 0
        self._down_until = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    # -- configuration helpers ------------------------------------------------------------

    def _url(self, template: Any, key: str) -> str:
        if not template:
            raise ProviderConfigError(f"missing HTTP setting: {key}")
        fields = _fields(str(template))
        missing = sorted(fields - set(self.credentials))
        if missing:
            raise ProviderConfigError(f"{key} needs setting(s) {', '.join(missing)}")
        url = str(template).format_map(_Values(self.credentials))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError(f"{key} must be an http(s) URL, not {url!r}")
        return url

    def _check_templates(self, params: Mapping[str, Any], allowed: frozenset[str], key: str) -> None:
        for name, value in params.items():
            if isinstance(value, str):
                unknown = sorted(_fields(value) - allowed - set(self.credentials))
                if unknown:
                    raise ProviderConfigError(f"{key}.{name}: unknown placeholder(s) {', '.join(unknown)} "
                                              "(message fields: from, parts, part, ref, text, to; or a credential)")

    @staticmethod
    def _positive(value: Any, key: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ProviderConfigError(f"{key} must be a number of seconds") from None
        if number <= 0:
            raise ProviderConfigError(f"{key} must be positive")
        return number

    def _authorization(self) -> str | None:
        if self.auth == "basic":
            if "username" not in self.credentials or "password" not in self.credentials:
                raise ProviderConfigError("basic auth needs credentials username and password")
            pair = f"{self.credentials['username']}:{self.credentials['password']}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if self.auth == "bearer":
            if "token" not in self.credentials:
                raise ProviderConfigError("bearer auth needs credentials token")
            return "Bearer " + self.credentials["token"]
        return None

    @staticmethod
    def _response_rule(values: Mapping[str, Any]) -> ResponseRule:
        unknown = sorted(set(values) - _RESPONSE_KEYS)
        if unknown:
            raise ProviderConfigError(f"unknown response setting(s): {', '.join(unknown)}")
        fmt = values.get("format", "json")
        if fmt not in ("json", "text"):
            raise ProviderConfigError(f"response format must be json or text, not {fmt!r}")
        if fmt == "text":
            for key in ("status", "message_id", "error"):
                if values.get(key):
                    try:
                        if re.compile(values[key]).groups != 1:
                            raise ProviderConfigError(f"response {key} regex needs exactly one group")
                    except re.error as exc:
                        raise ProviderConfigError(f"response {key} regex: {exc}") from exc
        codes = {key: frozenset(str(code) for code in values.get(key, ()))
                 for key in ("success", "duplicate", "temporary", "unavailable")}
        if values.get("status") and not codes["success"]:
            raise ProviderConfigError("response.success must list the status codes that mean accepted")
        return ResponseRule(format=fmt, status=values.get("status"), message_id=values.get("message_id"),
                            error=values.get("error"), **codes)

    def _balance_rule(self, values: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not values:
            return None
        unknown = sorted(set(values) - _BALANCE_KEYS)
        if unknown:
            raise ProviderConfigError(f"unknown balance setting(s): {', '.join(unknown)}")
        if not values.get("path"):
            raise ProviderConfigError("balance.path (where the amount is in the answer) is required")
        params = dict(values.get("params") or {})
        self._check_templates(params, frozenset(), "balance.params")
        return {"url": self._url(values.get("url"), "balance.url"), "method": str(values.get("method", "GET")).upper(),
                "params": params, "path": str(values["path"])}

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for holder in conns:
            holder.conn.close()
        self._local = threading.local()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _mark_down(self, reason: str) -> ProviderUnavailable:
        self._down_until = time.monotonic() + self.recheck_after
        logger.warning("SMS provider %s unavailable: %s", self.name, reason)
        return ProviderUnavailable(f"{self.name}: {reason}")

    # -- sending --------------------------------------------------------------------------------

    def submit(self, dest: str, source: str, text: str, *, ref: Any, concat_ref: int | None = None,
               timeout: float | None = 30.0) -> list[Future[SubmitResult]]:
        destination = destination_address(dest)
        sender = source_address(source)[2]
        seg = segment(text)
        total = seg.count
        if self.split == "message":
            results = self._send(destination, sender, text, str(ref), ref, list(range(total)), total, 1, 1, timeout)
        else:
            results = []
            for index, part in enumerate(seg.parts):
                try:
                    results += self._send(destination, sender, part, f"{ref}-{index + 1}", ref, [index], total,
                                          index + 1, total, timeout)
                except ProviderUnavailable as exc:
                    if index == 0:
                        raise
                    results += [SubmitResult(ref, i, total, Outcome.TEMPORARY, error=f"not sent: {exc}")
                                for i in range(index, total)]
                    break
        futures: list[Future[SubmitResult]] = []
        for result in results:
            future: Future[SubmitResult] = Future()
            future.set_result(result)
            futures.append(future)
        return futures

    def _send(self, to: str, sender: str, text: str, client_ref: str, ref: Any, indexes: list[int], total: int,
              part: int, parts: int, timeout: float | None) -> list[SubmitResult]:
        """One request; raises ProviderUnavailable, else one result per index."""
        def results(outcome: Outcome, **fields: Any) -> list[SubmitResult]:
            return [SubmitResult(ref, i, total, outcome, **fields) for i in indexes]

        wait = self.window_wait if timeout is None else timeout
        if not self._slots.acquire(timeout=wait):
            return results(Outcome.TEMPORARY, error=f"no window slot within {wait:g} s")
        try:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self._requests += 1
                sequence = self._requests
            if self._bucket is not None:
                self._bucket.acquire()
            values = _Values(self.credentials)
            values.update({"to": to, "from": sender, "text": text, "ref": client_ref, "part": str(part),
                           "parts": str(parts)})
            params = {key: value.format_map(values) if isinstance(value, str) else value
                      for key, value in self.params.items()}
            try:
                status, body = self._exchange(self.method, self.url, params, self.body)
            except _NotSent as exc:
                raise self._mark_down(f"cannot reach {self.url}: {exc}") from exc
            except _NoAnswer as exc:
                return results(Outcome.UNKNOWN, sequence=sequence, error=f"no answer: {exc}")
        finally:
            with self._lock:
                self.in_flight -= 1
            self._slots.release()
        return self._classify(status, body, results, sequence)

    def _classify(self, status: int, body: bytes, results: Any, sequence: int) -> list[SubmitResult]:
        rule = self.response
        if status in (401, 403):
            raise self._mark_down(f"authentication failed (HTTP {status})")
        if status >= 500:
            raise self._mark_down(f"HTTP {status} from the provider")
        if status == 429:
            return results(Outcome.TEMPORARY, sequence=sequence, command_status=status, error="throttled (HTTP 429)")
        text = body.decode("utf-8", errors="replace")
        parsed: Any = text
        if rule.format == "json":
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        if parsed is None or (rule.status and rule.extract(parsed, rule.status) is None):
            if 200 <= status < 300:
                return results(Outcome.UNKNOWN, sequence=sequence, command_status=status,
                               error=f"unreadable answer: {text[:200]!r}")
            return results(Outcome.PERMANENT, sequence=sequence, command_status=status,
                           error=f"HTTP {status}: {text[:200]}")
        error = rule.extract(parsed, rule.error)
        raw_id = rule.extract(parsed, rule.message_id)
        if rule.status is None:
            code = str(status)
            ok = 200 <= status < 300
        else:
            code = str(rule.extract(parsed, rule.status)).strip()
            ok = code in rule.success or code in rule.duplicate
        described = f"{code}: {error}" if error else code
        if code in rule.unavailable:
            raise self._mark_down(f"provider error {described}")
        if code in rule.temporary:
            return results(Outcome.TEMPORARY, sequence=sequence, command_status=status, error=described)
        if not ok:
            return results(Outcome.PERMANENT, sequence=sequence, command_status=status, error=described)
        message_id = None if raw_id is None else str(raw_id)
        return results(Outcome.ACCEPTED, sequence=sequence, command_status=status, message_id=message_id,
                       message_key=dlr.message_key(raw_id, self.id_rule),
                       error=f"duplicate reference, already accepted ({described})" if code in rule.duplicate else None)

    # -- HTTP ---------------------------------------------------------------------------------

    def _connection(self, url: str) -> _Conn:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname, parts.port)
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        holder = conns.get(key)
        if holder is not None and holder.used and _dropped(holder.conn):
            holder.conn.close()
            holder.used = False
        if holder is None:
            cls = _HTTPSConnection if parts.scheme == "https" else _HTTPConnection
            holder = _Conn(cls(parts.hostname, parts.port, timeout=self.connect_timeout))
            conns[key] = holder
            with self._lock:
                self._conns.append(holder)
        return holder

    def _exchange(self, method: str, url: str, params: Mapping[str, Any], body_kind: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        path = parts.path or "/"
        headers = {"Accept": "application/json, text/plain, */*", **self.headers}
        if self._auth_header:
            headers["Authorization"] = self._auth_header
        payload: bytes | None = None
        query = parts.query
        if body_kind == "query":
            query = "&".join(q for q in (query, urlencode(params)) if q)
        elif body_kind == "form":
            payload = urlencode(params).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            payload = json.dumps(params, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        target = f"{path}?{query}" if query else path
        holder = self._connection(url)
        try:
            return self._once(holder, method, target, payload, headers)
        except _NoAnswer:
            if not self.dedup:
                raise
            # The provider drops a repeated client reference: asking again cannot send twice.
            holder.conn.close()
            holder.used = False
            try:
                return self._once(holder, method, target, payload, headers)
            except _NotSent as exc:
                raise _NoAnswer(f"retry could not connect: {exc}") from exc
        except _NotSent:
            if not holder.used:
                raise
            holder.conn.close()  # a kept-alive connection the server had closed: one fresh try
            holder.used = False
            return self._once(holder, method, target, payload, headers)

    def _once(self, holder: _Conn, method: str, target: str, payload: bytes | None,
              headers: Mapping[str, str]) -> tuple[int, bytes]:
        conn = holder.conn
        if conn.sock is None:
            try:
                conn.timeout = self.connect_timeout
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                conn.close()
                raise _NotSent(exc) from exc
            holder.used = False
        conn.sock.settimeout(self.timeout)
        try:
            conn.request(method, target, body=payload, headers=dict(headers))
        except OSError as exc:
            conn.close()
            raise _NotSent(f"write failed: {exc}") from exc
        holder.used = True
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _NoAnswer(f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            conn.close()
            holder.used = False
        return response.status, data

    # -- balance ----------------------------------------------------------------------------

    def balance(self) -> Decimal | None:
        """The provider's remaining credit; None when the profile has no balance call.

        Raises ProviderUnavailable when the provider cannot be reached, answers
        5xx / 401 / 403, and ProviderError for an answer without a readable amount.
        """
        rule = self.balance_rule
        if rule is None:
            return None
        params = {key: value.format_map(_Values(self.credentials)) if isinstance(value, str) else value
                  for key, value in rule["params"].items()}
        body_kind = "query" if rule["method"] == "GET" else self.body
        try:
            status, body = self._exchange(rule["method"], rule["url"], params, body_kind)
        except (_NotSent, _NoAnswer) as exc:
            raise ProviderUnavailable(f"{self.name}: balance call failed: {exc}") from exc
        if status in (401, 403) or status >= 500:
            raise ProviderUnavailable(f"{self.name}: balance call answered HTTP {status}")
        text = body.decode("utf-8", errors="replace")
        try:
            value = json_path(json.loads(text), rule["path"])
            return Decimal(str(value)) if value is not None and not isinstance(value, bool) else _no_amount(text)
        except (ValueError, InvalidOperation):
            return _no_amount(text)

    # -- webhooks -------------------------------------------------------------------------------

    def handle_callback(self, data: Mapping[str, Any]) -> list[DeliveryReceipt | IncomingMessage]:
        """Parse one webhook (delivery report or incoming SMS); ValueError for one that cannot be used.

        An exception from ``on_receipt`` / ``on_incoming`` propagates: the
        webhook view then answers 5xx and the provider pushes the event again
        later (as an SMSC redelivers a deliver_sm answered with an error).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"callback body must be an object, not {type(data).__name__}")
        rule = self.callback
        if not rule:
            raise ValueError(f"{self.name}: this provider has no callback settings")
        type_key = rule.get("type")
        if type_key and str(_field(data, type_key) or "").lower() == str(rule.get("mo_value", "mo")).lower():
            event: DeliveryReceipt | IncomingMessage = self._incoming(data)
            if self.on_incoming:
                self.on_incoming(self.name, event)
        else:
            event = self._receipt(data)
            if self.on_receipt:
                self.on_receipt(self.name, event)
        return [event]

    def _receipt(self, data: Mapping[str, Any]) -> HttpReceipt:
        rule = self.callback
        raw_id = _field(data, rule.get("message_id"))
        client_ref = _field(data, rule.get("ref"))
        if raw_id in (None, "") and client_ref in (None, ""):
            raise ValueError(f"delivery report without {rule.get('message_id')!r} or {rule.get('ref')!r}")
        status = _field(data, rule.get("status"))
        if status in (None, ""):
            raise ValueError(f"delivery report without {rule.get('status')!r}")
        state = dlr.state_from_http(status, self._callback_states)
        stat = dlr.stat_for_state(state) or "UNKNOWN"
        error = _field(data, rule.get("error"))
        return HttpReceipt(
            message_id=None if raw_id in (None, "") else str(raw_id),
            message_key=dlr.message_key(raw_id, self.id_rule),
            stat=stat, err=None if error in (None, "") else str(error), sub=None, dlvrd=None, submit_date=None,
            done_date=self._when(_field(data, rule.get("done_date"))), text=None,
            message_state=_MESSAGE_STATE_OF_STAT[stat], network_error_code=None,
            source_addr=str(_field(data, rule.get("msisdn")) or ""), destination_addr="",
            raw=json.dumps(data, sort_keys=True, default=str), received_at=datetime.now(UTC),
            client_ref=None if client_ref in (None, "") else str(client_ref),
        )

    def _incoming(self, data: Mapping[str, Any]) -> IncomingMessage:
        rule = self.callback
        sender = _field(data, rule.get("mo_from"))
        text = _field(data, rule.get("mo_text"))
        if not sender or text is None:
            raise ValueError(f"incoming SMS without {rule.get('mo_from')!r} or {rule.get('mo_text')!r}")
        text = str(text)
        return IncomingMessage(
            source_addr=str(sender), destination_addr=str(_field(data, rule.get("mo_to")) or ""), text=text,
            data_coding=0x08 if detect_encoding(text) == "ucs2" else 0x00, part_count=1, complete=True,
            decode_error=None, received_at=datetime.now(UTC),
        )

    def _when(self, value: Any) -> datetime | None:
        if not value:
            return None
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=self._callback_zone)


def _field(data: Mapping[str, Any], key: str | None) -> Any:
    """A callback field (dotted path); a one-item list (form posts) gives its item."""
    if not key:
        return None
    value = json_path(data, key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _no_amount(text: str) -> Decimal:
    raise ProviderError(f"balance answer without a readable amount: {text[:200]!r}")


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when a kept-alive connection was closed by the server (readable while idle = EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
