"""RADIUS protocol cryptography as pure functions (no I/O, no Django).

* PAP: User-Password hiding (RFC 2865 section 5.2).
* CHAP: CHAP-Password check (RFC 1994, RFC 2865 section 2.2).
* MS-CHAPv2 (RFC 2759) and the MPPE keys derived from it (RFC 3079), with
  their RADIUS attribute encryption (RFC 2548 section 2.4.2/2.4.3).
* Message-Authenticator (RFC 2869 section 5.14, RFC 3579 section 3.2,
  RFC 5176 section 3.3) on raw packets.
* Request Authenticators of Accounting-Request (RFC 2866 section 3),
  Disconnect-Request and CoA-Request (RFC 5176 section 3.3), and Response
  Authenticators (RFC 2865 section 3).

MD4 and DES: ``hashlib.new('md4')`` is not available with OpenSSL 3, and
hashlib has no DES. Both come from the system libcrypto's low-level functions
(``MD4``, ``DES_set_key_unchecked``/``DES_ecb_encrypt``, which OpenSSL 3 still
exports) through ctypes when it is there (1.5 us an MD4, 3 us a DES block), and
from pycryptodome otherwise (13 us and 45 us: most of it is building the hash
or cipher object). Both give the same results (tests check each).

Functions that check data received from the network return ``False`` for
malformed input; functions that build data raise :exc:`ValueError` for
invalid arguments.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import secrets
import struct
import threading

from Crypto.Cipher import DES
from Crypto.Hash import MD4

__all__ = [
    "ACCESS_ACCEPT",
    "ACCESS_CHALLENGE",
    "ACCESS_REJECT",
    "ACCESS_REQUEST",
    "ACCOUNTING_REQUEST",
    "ACCOUNTING_RESPONSE",
    "COA_ACK",
    "COA_NAK",
    "COA_REQUEST",
    "DISCONNECT_ACK",
    "DISCONNECT_NAK",
    "DISCONNECT_REQUEST",
    "STATUS_SERVER",
    "accounting_request_authenticator",
    "add_message_authenticator",
    "challenge_hash",
    "challenge_response",
    "chap_challenge",
    "chap_password",
    "chap_verify",
    "generate_authenticator_response",
    "generate_nt_response",
    "hash_nt_password_hash",
    "message_authenticator",
    "mppe_asymmetric_start_key",
    "mppe_decrypt_key",
    "mppe_encrypt_key",
    "mppe_key_attributes",
    "mppe_keys",
    "mppe_master_key",
    "mschap_error",
    "mschapv2_build_response",
    "mschapv2_check_success",
    "mschapv2_success",
    "mschapv2_verify",
    "nt_password_hash",
    "pap_decrypt",
    "pap_encrypt",
    "parse_ms_chap2_response",
    "response_authenticator",
    "sign_request",
    "sign_response",
    "verify_accounting_request_authenticator",
    "verify_coa_request_authenticator",
    "verify_message_authenticator",
    "verify_response_authenticator",
]

# Packet codes (RFC 2865, 2866, 5176, 5997).
ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5
ACCESS_CHALLENGE = 11
STATUS_SERVER = 12
DISCONNECT_REQUEST = 40
DISCONNECT_ACK = 41
DISCONNECT_NAK = 42
COA_REQUEST = 43
COA_ACK = 44
COA_NAK = 45

HEADER_LENGTH = 20
AUTHENTICATOR_LENGTH = 16
MAX_PACKET_LENGTH = 4096
MESSAGE_AUTHENTICATOR_TYPE = 80
MS_CHAP2_RESPONSE_LENGTH = 50

_ZERO_AUTHENTICATOR = bytes(AUTHENTICATOR_LENGTH)
# Requests whose Request Authenticator is an MD5 over the packet; their
# Message-Authenticator is computed with a zero authenticator field.
_COMPUTED_AUTHENTICATOR_REQUESTS = frozenset({ACCOUNTING_REQUEST, DISCONNECT_REQUEST, COA_REQUEST})
_RANDOM_AUTHENTICATOR_REQUESTS = frozenset({ACCESS_REQUEST, STATUS_SERVER})
# Responses whose Message-Authenticator is computed with a zero
# authenticator by FreeRADIUS and pyrad instead of the Request Authenticator.
_ZERO_VECTOR_RESPONSES = frozenset({ACCOUNTING_RESPONSE, DISCONNECT_ACK, DISCONNECT_NAK, COA_ACK, COA_NAK})


def _md5(*parts: bytes) -> bytes:
    return hashlib.md5(b"".join(parts)).digest()


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _md4_pycryptodome(data: bytes) -> bytes:
    return MD4.new(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the shared secret must be non-empty bytes")


def _check_authenticator(authenticator: bytes, name: str = "authenticator") -> None:
    if not isinstance(authenticator, bytes) or len(authenticator) != AUTHENTICATOR_LENGTH:
        raise ValueError(f"{name} must be {AUTHENTICATOR_LENGTH} bytes")


# ---------------------------------------------------------------------------
# PAP (RFC 2865 section 5.2)
# ---------------------------------------------------------------------------


def pap_encrypt(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide a password for the User-Password attribute (RFC 2865 section 5.2).

    The password is padded with NULs to a multiple of 16 octets (an empty
    password becomes 16 NULs) and XORed with the MD5 chain of the secret and
    the Request Authenticator. Client side; used by tests and load generators.

    :raises ValueError: password longer than 128 octets, empty secret, or an
        authenticator that is not 16 octets.
    """
    _check_secret(secret)
    _check_authenticator(authenticator)
    if len(password) > 128:
        raise ValueError("a User-Password holds at most 128 octets")
    padded = password + b"\x00" * (-len(password) % 16) if password else bytes(16)
    result = bytearray()
    last = authenticator
    for offset in range(0, len(padded), 16):
        last = _xor(padded[offset : offset + 16], _md5(secret, last))
        result += last
    return bytes(result)


def pap_decrypt(user_password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Recover the password from a User-Password attribute value.

    Reverses :func:`pap_encrypt` and strips the NUL padding at the end. With
    a wrong secret the result is garbage, not an error: compare it with the
    stored password to authenticate.

    :param user_password: the attribute value as received (16 to 128 octets,
        a multiple of 16).
    :param secret: the shared secret of the NAS.
    :param authenticator: the Request Authenticator of the Access-Request.
    :raises ValueError: for a value whose length is not a multiple of 16
        between 16 and 128, an empty secret or a bad authenticator length.
    """
    _check_secret(secret)
    _check_authenticator(authenticator)
    length = len(user_password)
    if length == 0 or length % 16 or length > 128:
        raise ValueError(f"invalid User-Password length {length}: must be a multiple of 16 from 16 to 128")
    result = bytearray()
    last = authenticator
    for offset in range(0, length, 16):
        block = user_password[offset : offset + 16]
        result += _xor(block, _md5(secret, last))
        last = block
    return bytes(result).rstrip(b"\x00")


# ---------------------------------------------------------------------------
# CHAP (RFC 1994, RFC 2865 section 2.2)
# ---------------------------------------------------------------------------


def chap_challenge(request_authenticator: bytes, chap_challenge_attr: bytes | None = None) -> bytes:
    """Return the CHAP challenge of an Access-Request.

    It is the CHAP-Challenge attribute when present, otherwise the Request
    Authenticator (RFC 2865 section 2.2).
    """
    return chap_challenge_attr if chap_challenge_attr else request_authenticator


def chap_password(chap_id: int, password: bytes, challenge: bytes) -> bytes:
    """Build a CHAP-Password attribute value: ident + MD5(ident + password + challenge).

    Client side; used by tests and load generators.

    :raises ValueError: if ``chap_id`` is not 0-255 or the challenge is empty.
    """
    if not 0 <= chap_id <= 255:
        raise ValueError("the CHAP identifier is one octet")
    if not challenge:
        raise ValueError("the CHAP challenge must not be empty")
    ident = bytes((chap_id,))
    return ident + _md5(ident, password, challenge)


def chap_verify(password: bytes, chap_password_attr: bytes, challenge: bytes) -> bool:
    """Check a CHAP-Password against the cleartext password.

    :param password: the stored cleartext password.
    :param chap_password_attr: the CHAP-Password value (17 octets: the CHAP
        identifier and the 16 octet MD5 response).
    :param challenge: the CHAP-Challenge attribute, or the Request
        Authenticator when the request has none (see :func:`chap_challenge`).
    :return: whether the response matches; ``False`` for malformed values.
    """
    if len(chap_password_attr) != 17 or not challenge:
        return False
    expected = _md5(chap_password_attr[:1], password, challenge)
    return hmac.compare_digest(expected, chap_password_attr[1:])


# ---------------------------------------------------------------------------
# MS-CHAPv2 (RFC 2759)
# ---------------------------------------------------------------------------

_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash: MD4 of the UTF-16LE password (RFC 2759 section 8.3)."""
    return _md4(password.encode("utf-16-le"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """HashNtPasswordHash: MD4 of the NT password hash (RFC 2759 section 8.4)."""
    return _md4(password_hash)


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: bytes) -> bytes:
    """ChallengeHash (RFC 2759 section 8.2): the 8 octet challenge.

    Only the user name without a prepended ``DOMAIN\\`` is hashed, as the
    RFC requires and as Windows and pppd do.
    """
    name = username.rsplit(b"\\", 1)[-1]
    return _sha1(peer_challenge, authenticator_challenge, name)[:8]


# odd-parity octet for each 7-bit value shifted left by one (RFC 2759 section 8.6)
_ODD_PARITY = bytes(((v << 1) | (bin(v).count("1") % 2 == 0)) for v in range(128))


def _des_key(key7: bytes) -> bytes:
    """Spread 56 key bits over 8 octets with odd parity (RFC 2759 section 8.6)."""
    bits = int.from_bytes(key7, "big")
    return bytes(_ODD_PARITY[(bits >> shift) & 0x7F] for shift in (49, 42, 35, 28, 21, 14, 7, 0))


def _load_libcrypto():
    """``(MD4, DES_set_key_unchecked, DES_ecb_encrypt)`` of the system libcrypto, or None."""
    names = ["libcrypto.so.3", "libcrypto.so"]
    found = ctypes.util.find_library("crypto")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            md4, set_key, ecb = lib.MD4, lib.DES_set_key_unchecked, lib.DES_ecb_encrypt
        except (OSError, AttributeError):
            continue
        md4.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
        md4.restype = ctypes.c_void_p
        set_key.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        set_key.restype = None
        ecb.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        ecb.restype = None
        return md4, set_key, ecb
    return None


_LIBCRYPTO = _load_libcrypto()
_LIBCRYPTO_DES = _LIBCRYPTO[1:] if _LIBCRYPTO else None
# per-thread scratch buffers: DES_key_schedule (128 octets), one DES block, one MD4 digest
_buffers = threading.local()


def _scratch() -> tuple:
    buffers = getattr(_buffers, "value", None)
    if buffers is None:
        buffers = _buffers.value = tuple(ctypes.create_string_buffer(n) for n in (128, 8, 16))
    return buffers


def _md4_libcrypto(data: bytes) -> bytes:
    out = _scratch()[2]
    _LIBCRYPTO[0](data, len(data), out)
    return out.raw


def _des_ecb_libcrypto(key8: bytes, block: bytes) -> bytes:
    set_key, ecb = _LIBCRYPTO_DES
    schedule, out, _ = _scratch()
    set_key(key8, schedule)
    ecb(block, out, schedule, 1)  # DES_ENCRYPT
    return out.raw


def _des_ecb_pycryptodome(key8: bytes, block: bytes) -> bytes:
    return DES.new(key8, DES.MODE_ECB).encrypt(block)


#: One DES block encryption: ``des_ecb_encrypt(8 octet key, 8 octet block)``.
des_ecb_encrypt = _des_ecb_libcrypto if _LIBCRYPTO_DES is not None else _des_ecb_pycryptodome
_md4 = _md4_libcrypto if _LIBCRYPTO is not None else _md4_pycryptodome


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse (RFC 2759 section 8.5): the 24 octet NT-Response.

    The 16 octet hash is zero padded to 21 octets and split into three DES
    keys, each of which encrypts the 8 octet challenge.
    """
    if len(challenge) != 8 or len(password_hash) != 16:
        raise ValueError("challenge must be 8 octets and password hash 16 octets")
    padded = password_hash + bytes(5)
    encrypt = des_ecb_encrypt
    return (
        encrypt(_des_key(padded[0:7]), challenge)
        + encrypt(_des_key(padded[7:14]), challenge)
        + encrypt(_des_key(padded[14:21]), challenge)
    )


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: bytes, password: str
) -> bytes:
    """GenerateNTResponse (RFC 2759 section 8.1): the peer's 24 octet response."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, nt_password_hash(password))


def generate_authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: bytes,
) -> bytes:
    """GenerateAuthenticatorResponse (RFC 2759 section 8.7).

    :param password_hash: the NT password hash (:func:`nt_password_hash`).
    :return: ``b"S="`` followed by 40 uppercase hex digits.
    """
    digest = _sha1(hash_nt_password_hash(password_hash), nt_response, _AUTH_MAGIC1)
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    digest = _sha1(digest, challenge, _AUTH_MAGIC2)
    return b"S=" + digest.hex().upper().encode("ascii")


def mschapv2_prepare(password_hash: bytes) -> bytes:
    """What a server keeps per user for MS-CHAPv2 logins (56 octets): the NT password
    hash, its hash (for the authenticator response and the MPPE master key) and the
    three odd-parity DES keys made from it (for checking the NT-Response)."""
    if len(password_hash) != 16:
        raise ValueError("the NT password hash is 16 octets")
    padded = password_hash + bytes(5)
    return (password_hash + hash_nt_password_hash(password_hash)
            + _des_key(padded[0:7]) + _des_key(padded[7:14]) + _des_key(padded[14:21]))


def mschapv2_verify_prepared(
    username: bytes, prepared: bytes, authenticator_challenge: bytes, ms_chap2_response: bytes
) -> bool:
    """:func:`mschapv2_verify` with :func:`mschapv2_prepare`'s value: one SHA-1 and three
    DES blocks per login."""
    if len(authenticator_challenge) != 16 or len(ms_chap2_response) != MS_CHAP2_RESPONSE_LENGTH:
        return False
    challenge = _login_challenge(ms_chap2_response, authenticator_challenge, username)
    encrypt = des_ecb_encrypt
    mine = (encrypt(prepared[32:40], challenge) + encrypt(prepared[40:48], challenge)
            + encrypt(prepared[48:56], challenge))
    return hmac.compare_digest(mine, ms_chap2_response[26:50])


def mschapv2_accept_prepared(
    username: bytes, prepared: bytes, authenticator_challenge: bytes, ms_chap2_response: bytes,
    secret: bytes, request_authenticator: bytes,
) -> tuple[bytes, bytes, bytes]:
    """``(MS-CHAP2-Success, MS-MPPE-Send-Key, MS-MPPE-Recv-Key)`` values for an
    Access-Accept after :func:`mschapv2_verify_prepared` succeeded: the same values as
    :func:`mschapv2_success_hash` and :func:`mppe_key_attributes_hash`, with the
    password's hash-hash computed once per user instead of twice per login."""
    # hashlib called directly, no helper per hash: this runs once per MS-CHAPv2 login
    sha1 = hashlib.sha1
    nt_response = ms_chap2_response[26:50]
    hash_hash = prepared[16:32]
    challenge = _login_challenge(ms_chap2_response, authenticator_challenge, username)
    digest = sha1(sha1(hash_hash + nt_response + _AUTH_MAGIC1).digest() + challenge + _AUTH_MAGIC2).digest()
    success = bytes((ms_chap2_response[0],)) + b"S=" + digest.hex().upper().encode("ascii")
    master = sha1(hash_hash + nt_response + _MASTER_MAGIC).digest()[:16]
    send_key = sha1(master + _SEND_KEY_TAIL).digest()[:16]
    recv_key = sha1(master + _RECV_KEY_TAIL).digest()[:16]
    # two distinct salts with the high bit set from one read of the system's random source
    random4 = bytearray(secrets.token_bytes(4))
    random4[0] |= 0x80
    random4[2] |= 0x80
    if random4[0:2] == random4[2:4]:
        random4[3] ^= 1
    return (
        success,
        _mppe_encrypt_key16(send_key, secret, request_authenticator, bytes(random4[0:2])),
        _mppe_encrypt_key16(recv_key, secret, request_authenticator, bytes(random4[2:4])),
    )


#: (ChallengeHash's input, its value) of the last MS-CHAPv2 login: the check and the
#: Success/MPPE values of one login need the same challenge (one SHA-1 saved per login;
#: a replaced pair between threads only costs a recomputation).
_last_challenge: tuple[bytes, bytes] = (b"", b"")


def _login_challenge(ms_chap2_response: bytes, authenticator_challenge: bytes, username: bytes) -> bytes:
    global _last_challenge
    key = ms_chap2_response[2:18] + authenticator_challenge + username
    last_key, value = _last_challenge
    if key != last_key:
        value = challenge_hash(ms_chap2_response[2:18], authenticator_challenge, username)
        _last_challenge = (key, value)
    return value


def _mppe_encrypt_key16(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """:func:`mppe_encrypt_key` for a 16-octet key (two blocks), the arguments already checked."""
    md5 = hashlib.md5
    b1 = md5(secret + request_authenticator + salt).digest()
    c1 = (int.from_bytes(b1) ^ (16 << 120 | int.from_bytes(key[:15]))).to_bytes(16)
    b2 = md5(secret + c1).digest()
    c2 = (int.from_bytes(b2) ^ (key[15] << 120)).to_bytes(16)
    return salt + c1 + c2


def parse_ms_chap2_response(ms_chap2_response: bytes) -> tuple[int, int, bytes, bytes]:
    """Split an MS-CHAP2-Response value (RFC 2548 section 2.3.2).

    :return: ``(ident, flags, peer_challenge, nt_response)``.
    :raises ValueError: if the value is not 50 octets.
    """
    if len(ms_chap2_response) != MS_CHAP2_RESPONSE_LENGTH:
        raise ValueError(f"MS-CHAP2-Response must be {MS_CHAP2_RESPONSE_LENGTH} octets")
    return (
        ms_chap2_response[0],
        ms_chap2_response[1],
        ms_chap2_response[2:18],
        ms_chap2_response[26:50],
    )


def mschapv2_build_response(
    username: bytes,
    password: str,
    authenticator_challenge: bytes,
    *,
    ident: int = 0,
    peer_challenge: bytes | None = None,
) -> bytes:
    """Build an MS-CHAP2-Response value as a NAS relays it (client side).

    Layout: ident, flags (0), 16 octet peer challenge, 8 reserved zero
    octets, 24 octet NT-Response. A random peer challenge is used unless one
    is given. Used by tests and the load generator.
    """
    if len(authenticator_challenge) != 16:
        raise ValueError("the authenticator challenge (MS-CHAP-Challenge) is 16 octets")
    if peer_challenge is None:
        peer_challenge = secrets.token_bytes(16)
    if len(peer_challenge) != 16:
        raise ValueError("the peer challenge is 16 octets")
    if not 0 <= ident <= 255:
        raise ValueError("ident is one octet")
    nt_response = generate_nt_response(authenticator_challenge, peer_challenge, username, password)
    return bytes((ident, 0)) + peer_challenge + bytes(8) + nt_response


def mschapv2_verify(username: bytes, password: str, authenticator_challenge: bytes, ms_chap2_response: bytes) -> bool:
    """Check an MS-CHAPv2 login against the cleartext password.

    :param username: the User-Name octets (a ``DOMAIN\\`` prefix is ignored).
    :param password: the stored cleartext password.
    :param authenticator_challenge: the MS-CHAP-Challenge value (16 octets).
    :param ms_chap2_response: the MS-CHAP2-Response value (50 octets).
    :return: whether the NT-Response matches; ``False`` for malformed values.
    """
    return mschapv2_verify_hash(username, nt_password_hash(password), authenticator_challenge, ms_chap2_response)


def mschapv2_verify_hash(
    username: bytes, password_hash: bytes, authenticator_challenge: bytes, ms_chap2_response: bytes
) -> bool:
    """:func:`mschapv2_verify` with the NT password hash already computed (the server
    computes it once per customer instead of three times per login)."""
    if len(authenticator_challenge) != 16 or len(ms_chap2_response) != MS_CHAP2_RESPONSE_LENGTH:
        return False
    _, _, peer_challenge, nt_response = parse_ms_chap2_response(ms_chap2_response)
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return hmac.compare_digest(challenge_response(challenge, password_hash), nt_response)


def mschapv2_success(username: bytes, password: str, authenticator_challenge: bytes, ms_chap2_response: bytes) -> bytes:
    """Build the MS-CHAP2-Success value for an Access-Accept.

    Ident of the response, then ``S=`` and the 40 hex digit authenticator
    response (RFC 2759 section 8.7, RFC 2548 section 2.3.3): 43 octets.
    Call it only after :func:`mschapv2_verify` succeeded.
    """
    return mschapv2_success_hash(username, nt_password_hash(password), authenticator_challenge, ms_chap2_response)


def mschapv2_success_hash(
    username: bytes, password_hash: bytes, authenticator_challenge: bytes, ms_chap2_response: bytes
) -> bytes:
    """:func:`mschapv2_success` with the NT password hash already computed."""
    ident, _, peer_challenge, nt_response = parse_ms_chap2_response(ms_chap2_response)
    auth_response = generate_authenticator_response(
        password_hash, nt_response, peer_challenge, authenticator_challenge, username
    )
    return bytes((ident,)) + auth_response


def mschapv2_check_success(
    success_attr: bytes,
    username: bytes,
    password: str,
    authenticator_challenge: bytes,
    ms_chap2_response: bytes,
) -> bool:
    """Client side: check the MS-CHAP2-Success value of an Access-Accept.

    A peer must verify that the server knows the password too.
    """
    if len(ms_chap2_response) != MS_CHAP2_RESPONSE_LENGTH or len(success_attr) < 43:
        return False
    expected = mschapv2_success(username, password, authenticator_challenge, ms_chap2_response)
    return hmac.compare_digest(success_attr[:43], expected)


def mschap_error(
    ident: int,
    error: int = 691,
    *,
    retry: bool = False,
    challenge: bytes | None = None,
    message: str = "Authentication failed",
) -> bytes:
    """Build an MS-CHAP-Error value for an Access-Reject (RFC 2759 section 6).

    ``ident`` + ``E=<error> R=<0|1> C=<32 hex> V=3 M=<message>``. Error 691
    is "authentication failure", 648 "password expired", 647 "account
    disabled". A random challenge is used unless one is given.
    """
    if not 0 <= ident <= 255:
        raise ValueError("ident is one octet")
    if challenge is None:
        challenge = secrets.token_bytes(16)
    if len(challenge) != 16:
        raise ValueError("the challenge is 16 octets")
    text = f"E={error} R={int(retry)} C={challenge.hex().upper()} V=3 M={message}"
    return bytes((ident,)) + text.encode("utf-8")


# ---------------------------------------------------------------------------
# MPPE keys (RFC 3079) and their RADIUS encryption (RFC 2548)
# ---------------------------------------------------------------------------

_MASTER_MAGIC = b"This is the MPPE Master Key"
_KEY_MAGIC2 = b"On the client side, this is the send key; on the server side, it is the receive key."
_KEY_MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40
_SEND_KEY_TAIL = _SHS_PAD1 + _KEY_MAGIC3 + _SHS_PAD2
_RECV_KEY_TAIL = _SHS_PAD1 + _KEY_MAGIC2 + _SHS_PAD2


def mppe_master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """GetMasterKey (RFC 3079 section 3.4): 16 octets."""
    return _sha1(password_hash_hash, nt_response, _MASTER_MAGIC)[:16]


def mppe_asymmetric_start_key(master_key: bytes, *, send: bool, server: bool = True, length: int = 16) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 section 3.4).

    :param send: the key for sending (True) or receiving (False).
    :param server: from the server's (NAS's) point of view, the default.
    :param length: 8 for 40/56-bit keys, 16 for 128-bit keys.
    """
    if length not in (8, 16):
        raise ValueError("MPPE session keys are 8 or 16 octets")
    magic = _KEY_MAGIC3 if send == server else _KEY_MAGIC2
    return _sha1(master_key, _SHS_PAD1, magic, _SHS_PAD2)[:length]


def mppe_keys(password: str, nt_response: bytes) -> tuple[bytes, bytes]:
    """Return the NAS's 128-bit ``(send_key, recv_key)`` for an MS-CHAPv2 login.

    These are the plaintext values of MS-MPPE-Send-Key and MS-MPPE-Recv-Key.
    """
    return mppe_keys_hash(nt_password_hash(password), nt_response)


def mppe_keys_hash(password_hash: bytes, nt_response: bytes) -> tuple[bytes, bytes]:
    """:func:`mppe_keys` with the NT password hash already computed."""
    master = mppe_master_key(hash_nt_password_hash(password_hash), nt_response)
    return (
        mppe_asymmetric_start_key(master, send=True),
        mppe_asymmetric_start_key(master, send=False),
    )


def _new_salt(exclude: bytes | None = None) -> bytes:
    while True:
        salt = struct.pack("!H", 0x8000 | secrets.randbits(15))
        if salt != exclude:
            return salt


def mppe_encrypt_key(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes | None = None) -> bytes:
    """Encrypt an MS-MPPE-Send-Key/Recv-Key value (RFC 2548 section 2.4.2).

    Plaintext: key length octet, key, zero padding to a multiple of 16.
    ``b(1) = MD5(secret + request_authenticator + salt)``,
    ``b(i) = MD5(secret + c(i-1))``, ``c(i) = p(i) XOR b(i)``.

    :param salt: 2 octets with the high bit set; random when omitted. The
        salts of the attributes of one packet must differ.
    :return: salt followed by the ciphertext.
    """
    _check_secret(secret)
    _check_authenticator(request_authenticator, "request_authenticator")
    if salt is None:
        salt = _new_salt()
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("the salt is 2 octets with the most significant bit set")
    if len(key) > 239:
        raise ValueError("key too long for one attribute")
    plain = bytes((len(key),)) + key
    plain += bytes(-len(plain) % 16)
    result = bytearray(salt)
    last = request_authenticator + salt
    for offset in range(0, len(plain), 16):
        last = _xor(plain[offset : offset + 16], _md5(secret, last))
        result += last
    return bytes(result)


def mppe_decrypt_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Decrypt an MS-MPPE-Send-Key/Recv-Key value (RFC 2548 section 2.4.2).

    :raises ValueError: for a malformed value (length, salt bit, or a key
        length octet that exceeds the plaintext; usually a wrong secret).
    """
    _check_secret(secret)
    _check_authenticator(request_authenticator, "request_authenticator")
    if len(value) < 18 or (len(value) - 2) % 16:
        raise ValueError("invalid encrypted MPPE key length")
    salt, cipher = value[:2], value[2:]
    if not salt[0] & 0x80:
        raise ValueError("the salt must have its most significant bit set")
    plain = bytearray()
    last = request_authenticator + salt
    for offset in range(0, len(cipher), 16):
        block = cipher[offset : offset + 16]
        plain += _xor(block, _md5(secret, last))
        last = block
    key_length = plain[0]
    if key_length > len(plain) - 1:
        raise ValueError("invalid key length octet (wrong secret?)")
    return bytes(plain[1 : 1 + key_length])


def mppe_key_attributes(
    secret: bytes, request_authenticator: bytes, nt_response: bytes, password: str
) -> tuple[bytes, bytes]:
    """Encrypted ``(MS-MPPE-Send-Key, MS-MPPE-Recv-Key)`` values for an Access-Accept.

    The keys are the 128-bit keys of :func:`mppe_keys`, each encrypted with
    its own random salt. Set them raw on a pyrad reply, e.g.
    ``reply[(311, 16)] = [send]`` and ``reply[(311, 17)] = [recv]``; setting
    them by name would encrypt them a second time.

    :param request_authenticator: of the Access-Request being answered.
    :param nt_response: the 24 octet NT-Response of the MS-CHAP2-Response.
    """
    return mppe_key_attributes_hash(secret, request_authenticator, nt_response, nt_password_hash(password))


def mppe_key_attributes_hash(
    secret: bytes, request_authenticator: bytes, nt_response: bytes, password_hash: bytes
) -> tuple[bytes, bytes]:
    """:func:`mppe_key_attributes` with the NT password hash already computed."""
    send_key, recv_key = mppe_keys_hash(password_hash, nt_response)
    send_salt = _new_salt()
    recv_salt = _new_salt(exclude=send_salt)
    return (
        mppe_encrypt_key(send_key, secret, request_authenticator, send_salt),
        mppe_encrypt_key(recv_key, secret, request_authenticator, recv_salt),
    )


# ---------------------------------------------------------------------------
# Raw packet helpers
# ---------------------------------------------------------------------------


def _split_packet(raw_packet: bytes) -> tuple[int, int, bytes, bytes]:
    """Return ``(code, identifier, authenticator, attributes)`` of a raw packet.

    Octets after the Length field are padding and ignored (RFC 2865 section 3).

    :raises ValueError: for a packet shorter than its header or Length field,
        or attributes whose lengths do not add up.
    """
    if len(raw_packet) < HEADER_LENGTH:
        raise ValueError("packet shorter than the RADIUS header")
    code, ident, length = struct.unpack_from("!BBH", raw_packet)
    if length < HEADER_LENGTH or length > len(raw_packet) or length > MAX_PACKET_LENGTH:
        raise ValueError("invalid packet Length field")
    attributes = raw_packet[HEADER_LENGTH:length]
    _attribute_offsets(attributes)
    return code, ident, raw_packet[4:HEADER_LENGTH], attributes


def _attribute_offsets(attributes: bytes) -> list[tuple[int, int, int]]:
    """Return ``(offset, type, length)`` of every attribute; ValueError if malformed."""
    result = []
    offset = 0
    while offset < len(attributes):
        if offset + 2 > len(attributes):
            raise ValueError("truncated attribute header")
        attr_type, attr_length = attributes[offset], attributes[offset + 1]
        if attr_length < 2 or offset + attr_length > len(attributes):
            raise ValueError("invalid attribute length")
        result.append((offset, attr_type, attr_length))
        offset += attr_length
    return result


def _header(code: int, ident: int, attributes: bytes) -> bytes:
    return struct.pack("!BBH", code, ident, HEADER_LENGTH + len(attributes))


def message_authenticator(packet_bytes_with_zeroed_ma: bytes, secret: bytes) -> bytes:
    """HMAC-MD5 of a packet keyed with the secret (RFC 2869 section 5.14).

    The packet must already have the Message-Authenticator value set to 16
    zero octets and the right value in the authenticator field (see
    :func:`add_message_authenticator`, which handles both).
    """
    _check_secret(secret)
    return hmac.new(secret, packet_bytes_with_zeroed_ma, "md5").digest()


def _message_authenticator_vectors(code: int, authenticator: bytes, request_authenticator: bytes | None) -> list[bytes]:
    if code in _COMPUTED_AUTHENTICATOR_REQUESTS:
        return [_ZERO_AUTHENTICATOR]
    if code in _RANDOM_AUTHENTICATOR_REQUESTS:
        return [authenticator]
    if request_authenticator is None:
        raise ValueError("request_authenticator is needed to check the Message-Authenticator of a response")
    _check_authenticator(request_authenticator, "request_authenticator")
    if code in _ZERO_VECTOR_RESPONSES:
        return [request_authenticator, _ZERO_AUTHENTICATOR]
    return [request_authenticator]


def verify_message_authenticator(
    raw_packet: bytes, secret: bytes, *, request_authenticator: bytes | None = None
) -> bool | None:
    """Check the Message-Authenticator of a received packet (RFC 3579 section 3.2).

    The HMAC is computed with the Message-Authenticator zeroed and, in the
    authenticator field:

    * Access-Request, Status-Server: the packet's own Request Authenticator;
    * Accounting-Request, Disconnect-Request, CoA-Request: 16 zero octets
      (their Request Authenticator is computed after the HMAC);
    * responses: ``request_authenticator``, the Request Authenticator of the
      request being answered. For Accounting-Response and the Disconnect/CoA
      ACK/NAK a zero field is accepted too: FreeRADIUS and pyrad compute it
      that way (except for replies to Status-Server).

    :return: ``None`` if the packet has no Message-Authenticator, ``True`` if
        it is valid, ``False`` if it is wrong, duplicated, not 16 octets long
        or the packet is malformed.
    :raises ValueError: for a response without ``request_authenticator``.
    """
    _check_secret(secret)
    try:
        code, ident, authenticator, attributes = _split_packet(raw_packet)
        offsets = _attribute_offsets(attributes)
    except ValueError:
        return False
    found = [(offset, length) for offset, attr_type, length in offsets if attr_type == MESSAGE_AUTHENTICATOR_TYPE]
    if not found:
        return None
    if len(found) > 1 or found[0][1] != 18:
        return False
    offset = found[0][0]
    received = attributes[offset + 2 : offset + 18]
    zeroed = attributes[: offset + 2] + _ZERO_AUTHENTICATOR + attributes[offset + 18 :]
    header = _header(code, ident, attributes)
    for vector in _message_authenticator_vectors(code, authenticator, request_authenticator):
        if hmac.compare_digest(received, message_authenticator(header + vector + zeroed, secret)):
            return True
    return False


def add_message_authenticator(raw_packet: bytes, secret: bytes, request_authenticator: bytes | None = None) -> bytes:
    """Fill in (or insert) the Message-Authenticator of an encoded packet.

    A missing Message-Authenticator is inserted as the first attribute (the
    BlastRADIUS / CVE-2024-3596 recommendation). The HMAC is computed with
    ``request_authenticator`` in the authenticator field when given (use it
    for responses), else with zeros for Accounting-Request, Disconnect-Request
    and CoA-Request, else with the packet's own authenticator field.

    The authenticator field itself is left unchanged: afterwards sign an
    Accounting/Disconnect/CoA request with :func:`sign_request` and a
    response with :func:`sign_response`, since the Message-Authenticator is
    part of what they hash.

    :raises ValueError: for a malformed packet or one that would grow
        beyond 4096 octets.
    """
    _check_secret(secret)
    code, ident, authenticator, attributes = _split_packet(raw_packet)
    offsets = [(o, length) for o, t, length in _attribute_offsets(attributes) if t == MESSAGE_AUTHENTICATOR_TYPE]
    if len(offsets) > 1:
        raise ValueError("packet has more than one Message-Authenticator")
    if offsets:
        offset, length = offsets[0]
        if length != 18:
            raise ValueError("Message-Authenticator must be 18 octets long")
    else:
        offset = 0
        attributes = bytes((MESSAGE_AUTHENTICATOR_TYPE, 18)) + _ZERO_AUTHENTICATOR + attributes
        if HEADER_LENGTH + len(attributes) > MAX_PACKET_LENGTH:
            raise ValueError("packet too long for a Message-Authenticator")
    zeroed = attributes[: offset + 2] + _ZERO_AUTHENTICATOR + attributes[offset + 18 :]
    if request_authenticator is not None:
        _check_authenticator(request_authenticator, "request_authenticator")
        vector = request_authenticator
    elif code in _COMPUTED_AUTHENTICATOR_REQUESTS:
        vector = _ZERO_AUTHENTICATOR
    else:
        vector = authenticator
    header = _header(code, ident, zeroed)
    digest = message_authenticator(header + vector + zeroed, secret)
    return header + authenticator + zeroed[: offset + 2] + digest + zeroed[offset + 18 :]


# ---------------------------------------------------------------------------
# Request and Response Authenticators
# ---------------------------------------------------------------------------


def accounting_request_authenticator(raw_packet: bytes, secret: bytes) -> bytes:
    """Compute the Request Authenticator of an Accounting/Disconnect/CoA request.

    ``MD5(Code + Identifier + Length + 16 zero octets + Attributes + secret)``
    (RFC 2866 section 3, RFC 5176 section 3.3).

    :raises ValueError: for a malformed packet or an empty secret.
    """
    _check_secret(secret)
    code, ident, _, attributes = _split_packet(raw_packet)
    return _md5(_header(code, ident, attributes), _ZERO_AUTHENTICATOR, attributes, secret)


def sign_request(raw_packet: bytes, secret: bytes) -> bytes:
    """Return an Accounting/Disconnect/CoA request with its Request Authenticator set.

    Octets after the Length field are dropped.
    """
    code, ident, _, attributes = _split_packet(raw_packet)
    header = _header(code, ident, attributes)
    return header + accounting_request_authenticator(raw_packet, secret) + attributes


def _verify_computed_request(raw_packet: bytes, secret: bytes, codes: frozenset[int]) -> bool:
    _check_secret(secret)
    try:
        code, _, authenticator, _ = _split_packet(raw_packet)
    except ValueError:
        return False
    if code not in codes:
        return False
    return hmac.compare_digest(authenticator, accounting_request_authenticator(raw_packet, secret))


def verify_accounting_request_authenticator(raw_packet: bytes, secret: bytes) -> bool:
    """Check the Request Authenticator of an Accounting-Request (RFC 2866 section 3).

    ``False`` for a wrong secret, a tampered or malformed packet, or a packet
    that is not an Accounting-Request.
    """
    return _verify_computed_request(raw_packet, secret, frozenset({ACCOUNTING_REQUEST}))


def verify_coa_request_authenticator(raw_packet: bytes, secret: bytes) -> bool:
    """Check the Request Authenticator of a Disconnect-Request or CoA-Request.

    RFC 5176 section 3.3 uses the RFC 2866 scheme. ``False`` for a wrong
    secret, a tampered or malformed packet, or another packet code.
    """
    return _verify_computed_request(raw_packet, secret, frozenset({DISCONNECT_REQUEST, COA_REQUEST}))


def response_authenticator(raw_response: bytes, request_authenticator: bytes, secret: bytes) -> bytes:
    """Compute the Response Authenticator of a reply (RFC 2865 section 3).

    ``MD5(Code + Identifier + Length + Request Authenticator + Attributes + secret)``;
    the same for Accounting-Response (RFC 2866) and the RFC 5176 ACK/NAKs.

    :raises ValueError: for a malformed packet, an empty secret or a bad
        authenticator length.
    """
    _check_secret(secret)
    _check_authenticator(request_authenticator, "request_authenticator")
    code, ident, _, attributes = _split_packet(raw_response)
    return _md5(_header(code, ident, attributes), request_authenticator, attributes, secret)


def sign_response(raw_response: bytes, request_authenticator: bytes, secret: bytes) -> bytes:
    """Return a reply with its Response Authenticator set (padding dropped)."""
    code, ident, _, attributes = _split_packet(raw_response)
    header = _header(code, ident, attributes)
    return header + response_authenticator(raw_response, request_authenticator, secret) + attributes


def verify_response_authenticator(raw_response: bytes, request_authenticator: bytes, secret: bytes) -> bool:
    """Check the Response Authenticator of a received reply (client side)."""
    try:
        _, _, authenticator, _ = _split_packet(raw_response)
        expected = response_authenticator(raw_response, request_authenticator, secret)
    except ValueError:
        return False
    return hmac.compare_digest(authenticator, expected)
