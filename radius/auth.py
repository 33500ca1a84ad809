"""Access-Request decisions: credentials, then the authorization rules, then the
reply attributes. Pure functions over the snapshot (no database, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.conf import settings
from django.core.signals import setting_changed

from . import crypto
from .packet import Packet, ipv4, ipv6_prefix, key_for, u32
from .snapshot import CustomerEntry, NasEntry

# Reject reasons (stable codes for logs and metrics) and their Reply-Message.
REASONS = {
    "unknown_user": "Unknown user",
    "wrong_password": "Wrong password",
    "no_credentials": "No supported authentication method",
    "disabled": "Account disabled",
    "suspended": "Account suspended",
    "expired": "Account expired",
    "no_package": "No active package",
    "wrong_service": "Account not allowed for this service",
    "data_quota": "Data quota exhausted",
    "time_quota": "Time quota exhausted",
    "simultaneous_use": "Simultaneous-use limit reached",
    "mac_mismatch": "Device (MAC address) not allowed",
}

USER_NAME = 1
USER_PASSWORD = 2
CHAP_PASSWORD = 3
SERVICE_TYPE = 6
FRAMED_PROTOCOL = 7
FRAMED_IP_ADDRESS = 8
REPLY_MESSAGE = 18
SESSION_TIMEOUT = 27
IDLE_TIMEOUT = 28
CALLING_STATION_ID = 31
CHAP_CHALLENGE = 60
ACCT_INTERIM_INTERVAL = 85
MS_CHAP_ERROR = (311, 2)
MS_MPPE_ENCRYPTION_POLICY = (311, 7)
MS_MPPE_ENCRYPTION_TYPES = (311, 8)
MS_CHAP_CHALLENGE = (311, 11)
MS_MPPE_SEND_KEY = (311, 16)
MS_MPPE_RECV_KEY = (311, 17)
MS_CHAP2_RESPONSE = (311, 25)
MS_CHAP2_SUCCESS = (311, 26)
MIKROTIK_RATE_LIMIT = (14988, 8)
MIKROTIK_ADDRESS_LIST = (14988, 19)

SERVICE_LOGIN = 1
SERVICE_FRAMED = 2
FRAMED_PPP = 1

_MAX_U32 = 2**32 - 1


@dataclass(slots=True)
class Decision:
    accepted: bool
    reason: str
    method: str
    customer: CustomerEntry | None = None
    #: Encoded-ready reply attributes: (key, raw value).
    attributes: list = field(default_factory=list)


def service_of(request: Packet) -> str | None:
    """'ppp', 'hotspot' or None (unknown: no type restriction beyond 'other')."""
    if request.integer(FRAMED_PROTOCOL) == FRAMED_PPP or request.integer(SERVICE_TYPE) == SERVICE_FRAMED:
        return "ppp"
    if request.integer(SERVICE_TYPE) == SERVICE_LOGIN:
        return "hotspot"
    return None


_ALLOWED = {
    "ppp": frozenset({"pppoe", "static"}),
    "hotspot": frozenset({"hotspot"}),
    None: frozenset({"pppoe", "static", "hotspot"}),
}


def normalise_mac(value: str) -> str:
    hexdigits = "".join(ch for ch in value.upper() if ch in "0123456789ABCDEF")
    if len(hexdigits) != 12:
        return value.upper()
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def check_password(request: Packet, nas: NasEntry, customer: CustomerEntry | None) -> tuple[str, bool | None]:
    """Return ``(method, ok)``; ok is None when no supported credential is present."""
    pap = request.get(USER_PASSWORD)
    if pap is not None:
        if customer is None:
            return "pap", False
        try:
            given = crypto.pap_decrypt(pap, nas.secret, request.authenticator)
        except ValueError:
            return "pap", False
        return "pap", given == customer.password_bytes
    chap = request.get(CHAP_PASSWORD)
    if chap is not None:
        if customer is None:
            return "chap", False
        challenge = crypto.chap_challenge(request.authenticator, request.get(CHAP_CHALLENGE))
        return "chap", crypto.chap_verify(customer.password_bytes, chap, challenge)
    ms_response = request.get(MS_CHAP2_RESPONSE)
    ms_challenge = request.get(MS_CHAP_CHALLENGE)
    if ms_response is not None and ms_challenge is not None:
        if customer is None:
            return "mschapv2", False
        user = request.get(USER_NAME) or b""
        return "mschapv2", crypto.mschapv2_verify_prepared(user, customer.mschap, ms_challenge, ms_response)
    return "", None


def authorize(customer: CustomerEntry, request: Packet, now: float) -> str | None:
    """The first rule the customer breaks, or None."""
    if customer.status == "disabled":
        return "disabled"
    if customer.status == "suspended":
        return "suspended"
    if customer.status == "expired" or (customer.expires_ts is not None and customer.expires_ts - now < 1):
        return "expired"
    if customer.package_id is None or not customer.package_active:
        return "no_package"
    if customer.customer_type not in _ALLOWED[service_of(request)]:
        return "wrong_service"
    if customer.data_quota_bytes is not None and customer.used_bytes >= customer.data_quota_bytes:
        return "data_quota"
    if customer.time_quota_seconds is not None and customer.used_seconds >= customer.time_quota_seconds:
        return "time_quota"
    if customer.open_sessions >= customer.simultaneous_use:
        return "simultaneous_use"
    if customer.mac_address:
        calling = request.text(CALLING_STATION_ID)
        if calling is None or normalise_mac(calling) != customer.mac_address:
            return "mac_mismatch"
    return None


# Settings the hot path reads on every Access-Accept, looked up once (a Django
# settings attribute costs ~1 us through LazySettings); cleared when a setting
# changes (tests override them).
_conf: dict = {}


def _setting(name: str, default):
    try:
        return _conf[name]
    except KeyError:
        value = _conf[name] = getattr(settings, name, default)
        return value


def _u32_setting(name: str, default: int) -> bytes:
    key = (name, "u32")
    try:
        return _conf[key]
    except KeyError:
        value = _conf[key] = u32(getattr(settings, name, default))
        return value


def _forget_settings(**_kwargs) -> None:
    _conf.clear()


setting_changed.connect(_forget_settings)


def address_list_for(customer: CustomerEntry) -> str:
    template = _setting("RADIUS_ADDRESS_LIST", "pkg-{package_id}")
    if not template:
        return ""
    key = (template, customer.package_id, customer.customer_type, customer.tenant_id)
    value = _conf.get(key)
    if value is None:  # one per package, type and tenant
        value = _conf[key] = template.format(package_id=customer.package_id, customer_type=customer.customer_type,
                                             tenant_id=customer.tenant_id)
    return value


def accept_attributes(customer: CustomerEntry, request: Packet, now: float) -> list:
    attrs: list = []
    if customer.static_ip:
        attrs.append((FRAMED_IP_ADDRESS, ipv4(customer.static_ip)))
    timeout: int | None = None
    if customer.expires_ts is not None:
        timeout = math.floor(customer.expires_ts - now)
    if customer.time_quota_seconds is not None:
        left = customer.time_quota_seconds - customer.used_seconds
        timeout = left if timeout is None else min(timeout, left)
    if timeout is not None:
        attrs.append((SESSION_TIMEOUT, u32(max(1, min(timeout, _MAX_U32)))))
    attrs.append((ACCT_INTERIM_INTERVAL, _u32_setting("RADIUS_INTERIM_INTERVAL", 300)))
    if customer.customer_type == "hotspot":
        attrs.append((IDLE_TIMEOUT, _u32_setting("RADIUS_HOTSPOT_IDLE_TIMEOUT", 600)))
    if customer.rate_limit:
        attrs.append((MIKROTIK_RATE_LIMIT, customer.rate_limit.encode()))
    address_list = address_list_for(customer)
    if address_list:
        attrs.append((MIKROTIK_ADDRESS_LIST, address_list.encode()))
    for name, value in customer.addresses:
        try:
            key = key_for(name)
        except KeyError:
            continue
        if key in (97, 123):  # Framed-IPv6-Prefix, Delegated-IPv6-Prefix
            attrs.append((key, ipv6_prefix(value)))
        elif key == FRAMED_IP_ADDRESS:
            if not customer.static_ip:
                attrs.append((key, ipv4(value)))
        elif isinstance(value, int):
            attrs.append((key, u32(value)))
        else:
            attrs.append((key, value.encode() if isinstance(value, str) else bytes(value)))
    return attrs


def decide(request: Packet, nas: NasEntry, customer: CustomerEntry | None, now: float) -> Decision:
    """Authenticate and authorize one Access-Request."""
    method, ok = check_password(request, nas, customer)
    if ok is None:
        return Decision(False, "no_credentials", method, customer)
    if customer is None:
        return Decision(False, "unknown_user", method)
    if not ok:
        decision = Decision(False, "wrong_password", method, customer)
    else:
        reason = authorize(customer, request, now)
        if reason is None:
            decision = Decision(True, "ok", method, customer, accept_attributes(customer, request, now))
        else:
            decision = Decision(False, reason, method, customer)
    if method == "mschapv2":
        _mschap_attributes(decision, request, nas, customer)
    return decision


def _mschap_attributes(decision: Decision, request: Packet, nas: NasEntry, customer: CustomerEntry) -> None:
    user = request.get(USER_NAME) or b""
    response = request.get(MS_CHAP2_RESPONSE)
    challenge = request.get(MS_CHAP_CHALLENGE)
    if decision.accepted:
        success, send, recv = crypto.mschapv2_accept_prepared(
            user, customer.mschap, challenge, response, nas.secret, request.authenticator)
        decision.attributes.append((MS_CHAP2_SUCCESS, success))
        decision.attributes.append((MS_MPPE_ENCRYPTION_POLICY, u32(1)))
        decision.attributes.append((MS_MPPE_ENCRYPTION_TYPES, u32(4)))
        decision.attributes.append((MS_MPPE_SEND_KEY, send))
        decision.attributes.append((MS_MPPE_RECV_KEY, recv))
    else:
        ident = response[0] if response else 0
        error = {"expired": 648, "disabled": 647, "suspended": 647}.get(decision.reason, 691)
        message = REASONS.get(decision.reason, "Access denied")
        decision.attributes.append((MS_CHAP_ERROR, crypto.mschap_error(ident, error, message=message)))


def reject_attributes(decision: Decision) -> list:
    attrs = [(REPLY_MESSAGE, REASONS.get(decision.reason, "Access denied").encode())]
    attrs.extend(decision.attributes)
    return attrs
