"""A minimal RADIUS packet codec for the server's hot path.

pyrad parses every packet twice in its asyncio server and builds Python
objects for every attribute; here a request is decoded once into
``{key: [raw values]}`` where ``key`` is the attribute number for standard
attributes and ``(vendor_id, vendor_type)`` for vendor-specific ones (RFC
2865 section 5.26 format: one octet type, one octet length). Values stay raw
bytes; the few the server reads are converted by the small helpers below.
Names come from the project's pyrad dictionary (:func:`key_for`) so nothing
here hard-codes a vendor table that could drift from the dictionary files.

:func:`decode` raises :exc:`PacketError` (a :exc:`ValueError`) for anything
malformed: short header, Length field out of range, attribute lengths that do
not add up. Octets after the Length field are padding and ignored.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import socket
import struct

from .dictionary import load_dictionary

__all__ = [
    "AttrKey",
    "Packet",
    "PacketError",
    "decode",
    "encode",
    "encode_attributes",
    "key_for",
]

HEADER = 20
MAX_LENGTH = 4096
VSA = 26
MESSAGE_AUTHENTICATOR = 80
_ZERO16 = bytes(16)

AttrKey = int | tuple[int, int]

_HEAD = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_inet_ntoa = socket.inet_ntoa


class PacketError(ValueError):
    """The datagram is not a well-formed RADIUS packet."""


class Packet:
    """One decoded packet; ``attributes`` maps keys to lists of raw values."""

    __slots__ = ("attributes", "authenticator", "code", "ident", "ma_offset", "raw")

    def __init__(
        self, code: int, ident: int, authenticator: bytes, attributes: dict, raw: bytes, ma_offset: int = -1
    ) -> None:
        self.code = code
        self.ident = ident
        self.authenticator = authenticator
        self.attributes: dict[AttrKey, list[bytes]] = attributes
        self.raw = raw
        #: Offset in ``raw`` of the Message-Authenticator attribute: -1 if absent,
        #: -2 if present more than once or not 18 octets long (invalid).
        self.ma_offset = ma_offset

    def get(self, key: AttrKey) -> bytes | None:
        values = self.attributes.get(key)
        return values[0] if values else None

    def text(self, key: AttrKey) -> str | None:
        """First value decoded as text (invalid UTF-8 is replaced, never raised; NUL
        characters, which PostgreSQL text cannot store, are dropped)."""
        value = self.get(key)
        if value is None:
            return None
        return value.decode("utf-8", "replace").replace("\x00", "")

    def integer(self, key: AttrKey) -> int | None:
        """First value as an unsigned 32-bit integer, None if absent or not 4 octets."""
        value = self.get(key)
        if value is None or len(value) != 4:
            return None
        return _U32.unpack(value)[0]

    def ipv4(self, key: AttrKey) -> str | None:
        value = self.get(key)
        if value is None or len(value) != 4:
            return None
        return _inet_ntoa(value)


def decode(data: bytes) -> Packet:
    """Decode a datagram; :exc:`PacketError` if malformed."""
    size = len(data)
    if size < HEADER:
        raise PacketError("shorter than the RADIUS header")
    code, ident, length = _HEAD.unpack_from(data)
    if length < HEADER or length > size or length > MAX_LENGTH:
        raise PacketError("invalid Length field")
    attributes: dict[AttrKey, list[bytes]] = {}
    pos = HEADER
    ma_offset = -1
    while pos < length:
        if pos + 2 > length:
            raise PacketError("truncated attribute header")
        attr_type = data[pos]
        attr_len = data[pos + 1]
        end = pos + attr_len
        if attr_len < 2 or end > length:
            raise PacketError("invalid attribute length")
        value = data[pos + 2 : end]
        if attr_type == VSA and attr_len >= 6:
            _decode_vsa(value, attributes)
        elif attr_type == MESSAGE_AUTHENTICATOR:
            ma_offset = pos if ma_offset == -1 and attr_len == 18 else -2
        attributes.setdefault(attr_type, []).append(value)
        pos = end
    return Packet(code, ident, data[4:20], attributes, data[:length], ma_offset)


def request_message_authenticator_ok(packet: Packet, secret: bytes) -> bool:
    """Check the Message-Authenticator of an Access-Request or Status-Server
    (RFC 3579 section 3.2: HMAC-MD5 over the packet as received, with the
    attribute's value zeroed). False when it is absent or malformed."""
    offset = packet.ma_offset
    if offset < 0:
        return False
    raw = packet.raw
    zeroed = raw[: offset + 2] + _ZERO16 + raw[offset + 18 :]
    return hmac.compare_digest(hmac.new(secret, zeroed, "md5").digest(), raw[offset + 2 : offset + 18])


def _decode_vsa(value: bytes, attributes: dict[AttrKey, list[bytes]]) -> None:
    """Split a Vendor-Specific value into sub-attributes when it has the RFC format.

    A value that does not split cleanly is left as the raw type 26 attribute
    only (some vendors use other formats); that is not an error.
    """
    vendor = _U32.unpack_from(value)[0]
    pos = 4
    found = []
    while pos < len(value):
        if pos + 2 > len(value):
            return
        sub_type, sub_len = value[pos], value[pos + 1]
        if sub_len < 2 or pos + sub_len > len(value):
            return
        found.append(((vendor, sub_type), value[pos + 2 : pos + sub_len]))
        pos += sub_len
    for key, sub_value in found:
        attributes.setdefault(key, []).append(sub_value)


def _encode_one(key: AttrKey, value: bytes) -> bytes:
    if isinstance(key, tuple):
        vendor, sub_type = key
        if len(value) > 247:
            raise ValueError("vendor attribute value longer than 247 octets")
        return bytes((VSA, len(value) + 8)) + _U32.pack(vendor) + bytes((sub_type, len(value) + 2)) + value
    if len(value) > 253:
        raise ValueError("attribute value longer than 253 octets")
    return bytes((key, len(value) + 2)) + value


def encode_attributes(attributes: list[tuple[AttrKey, bytes]]) -> bytes:
    """Encode ``(key, raw value)`` pairs in order; vendor keys get one VSA each."""
    return b"".join(_encode_one(key, value) for key, value in attributes)


def encode(code: int, ident: int, authenticator: bytes, attributes: bytes) -> bytes:
    """Assemble a packet from encoded attributes (the authenticator as given)."""
    length = HEADER + len(attributes)
    if length > MAX_LENGTH:
        raise ValueError("packet longer than 4096 octets")
    return _HEAD.pack(code, ident, length) + authenticator + attributes


def u32(value: int) -> bytes:
    return _U32.pack(value)


def ipv4(value: str) -> bytes:
    return ipaddress.IPv4Address(value).packed


def ipv6_prefix(value: str) -> bytes:
    """RFC 3162 Framed-IPv6-Prefix / Delegated-IPv6-Prefix value for 'addr/len'."""
    network = ipaddress.IPv6Network(value, strict=False)
    return bytes((0, network.prefixlen)) + network.network_address.packed


@functools.cache
def key_for(name: str) -> AttrKey:
    """Attribute key for a dictionary name: 1 for 'User-Name', (14988, 8) for 'Mikrotik-Rate-Limit'."""
    dictionary = load_dictionary()
    attribute = dictionary.attributes[name]
    if attribute.vendor:
        return (dictionary.vendors.GetForward(attribute.vendor), attribute.code)
    return attribute.code


@functools.cache
def name_for(key: AttrKey) -> str:
    """Dictionary name of a key, or its number(s) as text when unknown."""
    dictionary = load_dictionary()
    try:
        if isinstance(key, tuple):
            vendor_name = dictionary.vendors.GetBackward(key[0])
            return dictionary.attrindex.GetBackward((dictionary.vendors.GetForward(vendor_name), key[1]))
        return dictionary.attrindex.GetBackward(key)
    except KeyError:
        return str(key)
