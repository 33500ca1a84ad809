"""RFC vectors and cross-checks against pyrad for radius.crypto."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyrad.packet import AcctPacket, AuthPacket, CoAPacket

from radius import crypto
from radius.dictionary import load_dictionary

SECRET = b"s3cr3t-shared"
REQUEST_AUTHENTICATOR = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")

# RFC 2759 section 9.2 / RFC 3079 section 3.5.3
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTHENTICATOR_RESPONSE = b"S=407A5589115FD0D6209F510FE9C04566932CDA56"
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SEND_START_KEY_128 = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
SEND_START_KEY_40 = bytes.fromhex("8B7CDC149B993A1B")


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary()


# --- PAP -------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 100, 127, 128])
def test_pap_round_trip(length):
    password = bytes((65 + i % 26) for i in range(length))
    hidden = crypto.pap_encrypt(password, SECRET, REQUEST_AUTHENTICATOR)
    assert len(hidden) == max(16, -(-length // 16) * 16)
    assert crypto.pap_decrypt(hidden, SECRET, REQUEST_AUTHENTICATOR) == password


@pytest.mark.parametrize("password", ["x" * 16, "y" * 17, "z" * 128, "পাসওয়ার্ড", "p@ss word"])
def test_pap_matches_pyrad(password):
    pkt = AuthPacket(secret=SECRET, authenticator=REQUEST_AUTHENTICATOR)
    hidden = pkt.PwCrypt(password)
    assert crypto.pap_encrypt(password.encode(), SECRET, REQUEST_AUTHENTICATOR) == hidden
    assert crypto.pap_decrypt(hidden, SECRET, REQUEST_AUTHENTICATOR) == password.encode()
    assert pkt.PwDecrypt(crypto.pap_encrypt(password.encode(), SECRET, REQUEST_AUTHENTICATOR)) == password


def test_pap_first_block_is_md5_xor():
    hidden = crypto.pap_encrypt(b"abc", SECRET, REQUEST_AUTHENTICATOR)
    key = hashlib.md5(SECRET + REQUEST_AUTHENTICATOR).digest()
    assert bytes(a ^ b for a, b in zip(hidden, key, strict=True)) == b"abc" + bytes(13)


def test_pap_wrong_secret_gives_other_password():
    hidden = crypto.pap_encrypt(b"password1", SECRET, REQUEST_AUTHENTICATOR)
    assert crypto.pap_decrypt(hidden, b"other", REQUEST_AUTHENTICATOR) != b"password1"


@pytest.mark.parametrize("length", [0, 1, 15, 17, 33, 144])
def test_pap_decrypt_rejects_bad_lengths(length):
    with pytest.raises(ValueError):
        crypto.pap_decrypt(bytes(length), SECRET, REQUEST_AUTHENTICATOR)


def test_pap_argument_checks():
    with pytest.raises(ValueError):
        crypto.pap_encrypt(b"x" * 129, SECRET, REQUEST_AUTHENTICATOR)
    with pytest.raises(ValueError):
        crypto.pap_decrypt(bytes(16), b"", REQUEST_AUTHENTICATOR)
    with pytest.raises(ValueError):
        crypto.pap_decrypt(bytes(16), SECRET, bytes(15))


# --- CHAP ------------------------------------------------------------------


def test_chap_verify_with_authenticator_as_challenge(dictionary):
    attr = crypto.chap_password(7, b"secret-pw", REQUEST_AUTHENTICATOR)
    assert len(attr) == 17 and attr[0] == 7
    assert crypto.chap_verify(b"secret-pw", attr, crypto.chap_challenge(REQUEST_AUTHENTICATOR))
    assert not crypto.chap_verify(b"wrong", attr, REQUEST_AUTHENTICATOR)
    pkt = AuthPacket(secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    pkt["CHAP-Password"] = attr
    assert pkt.VerifyChapPasswd("secret-pw")


def test_chap_verify_with_chap_challenge_attribute(dictionary):
    challenge = bytes(range(20))
    attr = crypto.chap_password(200, b"pw", challenge)
    assert crypto.chap_challenge(REQUEST_AUTHENTICATOR, challenge) == challenge
    assert crypto.chap_verify(b"pw", attr, challenge)
    assert not crypto.chap_verify(b"pw", attr, REQUEST_AUTHENTICATOR)
    pkt = AuthPacket(secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    pkt["CHAP-Password"] = attr
    pkt["CHAP-Challenge"] = challenge
    assert pkt.VerifyChapPasswd("pw")


def test_chap_rfc1994_formula():
    attr = bytes((1,)) + hashlib.md5(b"\x01" + b"pw" + b"challenge").digest()
    assert crypto.chap_verify(b"pw", attr, b"challenge")


@pytest.mark.parametrize("attr", [b"", bytes(16), bytes(18)])
def test_chap_malformed_is_false(attr):
    assert crypto.chap_verify(b"pw", attr, REQUEST_AUTHENTICATOR) is False


# --- MS-CHAPv2: RFC 2759 section 9.2 vectors ------------------------------------


def test_rfc2759_password_hashes():
    assert crypto.nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert crypto.hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_rfc2759_challenge_hash_and_nt_response():
    assert crypto.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE
    assert crypto.challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE
    assert crypto.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == NT_RESPONSE


@pytest.mark.parametrize("implementation", ["libcrypto", "pycryptodome"])
def test_rfc2759_nt_response_with_each_des_implementation(implementation, monkeypatch):
    if implementation == "libcrypto" and crypto._LIBCRYPTO_DES is None:
        pytest.skip("no system libcrypto with DES_ecb_encrypt")
    monkeypatch.setattr(crypto, "des_ecb_encrypt", getattr(crypto, f"_des_ecb_{implementation}"))
    assert crypto.challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE
    response = crypto.mschapv2_build_response(USER, PASSWORD, AUTH_CHALLENGE, peer_challenge=PEER_CHALLENGE)
    assert response[26:] == NT_RESPONSE
    assert crypto.mschapv2_verify(USER, PASSWORD, AUTH_CHALLENGE, response) is True


def test_des_implementations_agree_with_pycryptodome_on_random_keys():
    import secrets

    from Crypto.Cipher import DES

    if crypto._LIBCRYPTO_DES is None:
        pytest.skip("no system libcrypto with DES_ecb_encrypt")
    for _ in range(200):
        key7, block = secrets.token_bytes(7), secrets.token_bytes(8)
        key8 = crypto._des_key(key7)
        expected = DES.new(key8, DES.MODE_ECB).encrypt(block)
        assert crypto._des_ecb_libcrypto(key8, block) == expected
        assert crypto._des_ecb_pycryptodome(key8, block) == expected


@pytest.mark.parametrize("implementation", ["libcrypto", "pycryptodome"])
def test_rfc2759_password_hashes_with_each_md4_implementation(implementation, monkeypatch):
    if implementation == "libcrypto" and crypto._LIBCRYPTO is None:
        pytest.skip("no system libcrypto with MD4")
    monkeypatch.setattr(crypto, "_md4", getattr(crypto, f"_md4_{implementation}"))
    assert crypto.nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert crypto.hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_md4_implementations_agree():
    import secrets

    if crypto._LIBCRYPTO is None:
        pytest.skip("no system libcrypto with MD4")
    # RFC 1320 appendix A.5
    assert crypto._md4_libcrypto(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert crypto._md4_libcrypto(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    for length in (0, 1, 16, 55, 56, 64, 200, 1000):
        data = secrets.token_bytes(length)
        assert crypto._md4_libcrypto(data) == crypto._md4_pycryptodome(data)


def test_des_key_has_odd_parity_and_the_56_key_bits():
    key8 = crypto._des_key(bytes.fromhex("FFFFFFFFFFFFFF"))
    assert key8 == bytes.fromhex("FEFEFEFEFEFEFEFE")
    assert crypto._des_key(bytes(7)) == bytes.fromhex("0101010101010101")
    key8 = crypto._des_key(bytes.fromhex("44EBBA8D5312B8"))
    assert all(bin(b).count("1") % 2 == 1 for b in key8)
    bits = "".join(f"{b >> 1:07b}" for b in key8)
    assert int(bits, 2) == int.from_bytes(bytes.fromhex("44EBBA8D5312B8"), "big")


def test_rfc2759_authenticator_response():
    response = crypto.generate_authenticator_response(PASSWORD_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert response == AUTHENTICATOR_RESPONSE


def test_mschapv2_build_response_layout():
    value = crypto.mschapv2_build_response(USER, PASSWORD, AUTH_CHALLENGE, ident=0x2A, peer_challenge=PEER_CHALLENGE)
    assert len(value) == 50
    assert value[0] == 0x2A and value[1] == 0
    assert value[2:18] == PEER_CHALLENGE
    assert value[18:26] == bytes(8)
    assert value[26:] == NT_RESPONSE
    assert crypto.parse_ms_chap2_response(value) == (0x2A, 0, PEER_CHALLENGE, NT_RESPONSE)


def test_mschapv2_verify_right_and_wrong_password():
    value = crypto.mschapv2_build_response(USER, PASSWORD, AUTH_CHALLENGE, ident=1, peer_challenge=PEER_CHALLENGE)
    assert crypto.mschapv2_verify(USER, PASSWORD, AUTH_CHALLENGE, value)
    assert not crypto.mschapv2_verify(USER, "clientpass", AUTH_CHALLENGE, value)
    assert not crypto.mschapv2_verify(b"Other", PASSWORD, AUTH_CHALLENGE, value)
    assert not crypto.mschapv2_verify(USER, PASSWORD, bytes(16), value)


def test_mschapv2_random_peer_challenge_and_unicode_password():
    value = crypto.mschapv2_build_response(b"rahim@isp", "পাসওয়ার্ড১২৩", AUTH_CHALLENGE)
    assert crypto.mschapv2_verify(b"rahim@isp", "পাসওয়ার্ড১২৩", AUTH_CHALLENGE, value)
    assert not crypto.mschapv2_verify(b"rahim@isp", "পাসওয়ার্ড১২", AUTH_CHALLENGE, value)


def test_mschapv2_domain_prefix_is_not_hashed():
    value = crypto.mschapv2_build_response(USER, PASSWORD, AUTH_CHALLENGE, peer_challenge=PEER_CHALLENGE)
    assert value[26:] == NT_RESPONSE
    assert crypto.mschapv2_verify(b"ACME\\User", PASSWORD, AUTH_CHALLENGE, value)


@pytest.mark.parametrize(
    ("challenge", "response"),
    [(AUTH_CHALLENGE, b""), (AUTH_CHALLENGE, bytes(49)), (AUTH_CHALLENGE, bytes(51)), (bytes(8), bytes(50))],
)
def test_mschapv2_malformed_is_false(challenge, response):
    assert crypto.mschapv2_verify(USER, PASSWORD, challenge, response) is False


def test_mschapv2_success_attribute():
    value = crypto.mschapv2_build_response(USER, PASSWORD, AUTH_CHALLENGE, ident=0x11, peer_challenge=PEER_CHALLENGE)
    success = crypto.mschapv2_success(USER, PASSWORD, AUTH_CHALLENGE, value)
    assert success == b"\x11" + AUTHENTICATOR_RESPONSE
    assert len(success) == 43
    assert crypto.mschapv2_check_success(success, USER, PASSWORD, AUTH_CHALLENGE, value)
    assert not crypto.mschapv2_check_success(success, USER, "other", AUTH_CHALLENGE, value)


def test_mschap_error_value():
    error = crypto.mschap_error(5, challenge=AUTH_CHALLENGE)
    assert error == b"\x05E=691 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=Authentication failed"
    assert crypto.mschap_error(1, 648, retry=True).startswith(b"\x01E=648 R=1 C=")


# --- MPPE keys: RFC 3079 section 3.5.3 vectors -------------------------------


def test_rfc3079_master_and_start_keys():
    master = crypto.mppe_master_key(PASSWORD_HASH_HASH, NT_RESPONSE)
    assert master == MASTER_KEY
    assert crypto.mppe_asymmetric_start_key(master, send=True) == SEND_START_KEY_128
    assert crypto.mppe_asymmetric_start_key(master, send=True, length=8) == SEND_START_KEY_40
    # the server's receive key is the client's send key and vice versa
    recv = crypto.mppe_asymmetric_start_key(master, send=False)
    assert recv == crypto.mppe_asymmetric_start_key(master, send=True, server=False)
    assert SEND_START_KEY_128 == crypto.mppe_asymmetric_start_key(master, send=False, server=False)
    assert recv != SEND_START_KEY_128


def test_mppe_keys_from_password():
    send, recv = crypto.mppe_keys(PASSWORD, NT_RESPONSE)
    assert send == SEND_START_KEY_128
    assert recv == crypto.mppe_asymmetric_start_key(MASTER_KEY, send=False)


def test_mppe_key_encryption_round_trip():
    salt = b"\x81\x23"
    value = crypto.mppe_encrypt_key(SEND_START_KEY_128, SECRET, REQUEST_AUTHENTICATOR, salt)
    assert len(value) == 2 + 32  # salt, then length octet + 16 key octets padded to 32
    assert value[:2] == salt
    first_block = bytes(
        a ^ b
        for a, b in zip(
            bytes((16,)) + SEND_START_KEY_128[:15],
            hashlib.md5(SECRET + REQUEST_AUTHENTICATOR + salt).digest(),
            strict=True,
        )
    )
    assert value[2:18] == first_block
    assert crypto.mppe_decrypt_key(value, SECRET, REQUEST_AUTHENTICATOR) == SEND_START_KEY_128
    with pytest.raises(ValueError):
        crypto.mppe_encrypt_key(SEND_START_KEY_128, SECRET, REQUEST_AUTHENTICATOR, b"\x01\x02")


def test_mppe_key_attributes_and_pyrad_decrypts_them(dictionary):
    send_attr, recv_attr = crypto.mppe_key_attributes(SECRET, REQUEST_AUTHENTICATOR, NT_RESPONSE, PASSWORD)
    assert send_attr[0] & 0x80 and recv_attr[0] & 0x80
    assert send_attr[:2] != recv_attr[:2]
    send, recv = crypto.mppe_keys(PASSWORD, NT_RESPONSE)
    assert crypto.mppe_decrypt_key(send_attr, SECRET, REQUEST_AUTHENTICATOR) == send
    assert crypto.mppe_decrypt_key(recv_attr, SECRET, REQUEST_AUTHENTICATOR) == recv

    # an Access-Accept carrying the raw values, decoded as a pyrad client would
    request = AuthPacket(id=9, secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    reply = request.CreateReply()
    reply[(311, 16)] = [send_attr]
    reply[(311, 17)] = [recv_attr]
    raw = reply.ReplyPacket()
    received = request.CreateReply(packet=raw)
    received.request_authenticator = REQUEST_AUTHENTICATOR
    assert request.VerifyReply(received, raw)
    assert received["MS-MPPE-Send-Key"] == [send]
    assert received["MS-MPPE-Recv-Key"] == [recv]


def test_pyrad_encrypted_mppe_key_decrypts_with_crypto(dictionary):
    request = AuthPacket(id=3, secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    reply = request.CreateReply()
    reply["MS-MPPE-Send-Key"] = SEND_START_KEY_128
    [value] = reply[(311, 16)]
    assert crypto.mppe_decrypt_key(value, SECRET, REQUEST_AUTHENTICATOR) == SEND_START_KEY_128


@pytest.mark.parametrize("value", [bytes(17), bytes(19), b"\x01\x02" + bytes(16)])
def test_mppe_decrypt_rejects_malformed(value):
    with pytest.raises(ValueError):
        crypto.mppe_decrypt_key(value, SECRET, REQUEST_AUTHENTICATOR)


# --- Message-Authenticator ---------------------------------------------------------


def _access_request(dictionary, *, message_authenticator=True) -> bytes:
    pkt = AuthPacket(id=17, secret=SECRET, dict=dictionary, message_authenticator=message_authenticator)
    pkt["User-Name"] = "alice"
    pkt["User-Password"] = pkt.PwCrypt("pw")
    pkt["NAS-IP-Address"] = "192.0.2.1"
    return pkt.RequestPacket()


def test_message_authenticator_is_hmac_md5():
    data = b"\x01\x02\x00\x26" + bytes(16) + b"\x50\x12" + bytes(16)
    assert crypto.message_authenticator(data, SECRET) == hmac.new(SECRET, data, "md5").digest()


def test_verify_access_request_message_authenticator(dictionary):
    raw = _access_request(dictionary)
    assert crypto.verify_message_authenticator(raw, SECRET) is True
    assert crypto.verify_message_authenticator(raw, b"wrong") is False


def test_message_authenticator_absent_is_none(dictionary):
    raw = _access_request(dictionary, message_authenticator=False)
    assert crypto.verify_message_authenticator(raw, SECRET) is None


def test_tampered_packet_fails_message_authenticator(dictionary):
    raw = bytearray(_access_request(dictionary))
    raw[-1] ^= 0x01  # last octet of NAS-IP-Address
    assert crypto.verify_message_authenticator(bytes(raw), SECRET) is False
    raw = bytearray(_access_request(dictionary))
    index = raw.index(b"\x50\x12") + 2
    raw[index] ^= 0x80  # the Message-Authenticator itself
    assert crypto.verify_message_authenticator(bytes(raw), SECRET) is False
    raw = bytearray(_access_request(dictionary))
    raw[5] ^= 0x01  # the Request Authenticator
    assert crypto.verify_message_authenticator(bytes(raw), SECRET) is False


def test_add_message_authenticator_to_access_request(dictionary):
    raw = _access_request(dictionary, message_authenticator=False)
    signed = crypto.add_message_authenticator(raw, SECRET)
    assert len(signed) == len(raw) + 18
    assert signed[20:22] == b"\x50\x12"  # inserted as the first attribute
    assert signed[4:20] == raw[4:20]
    assert crypto.verify_message_authenticator(signed, SECRET) is True
    decoded = AuthPacket(packet=signed, secret=SECRET, dict=dictionary)
    assert decoded.verify_message_authenticator()
    # filling in an existing one is idempotent
    assert crypto.add_message_authenticator(signed, SECRET) == signed


def test_response_message_authenticator(dictionary):
    request = AuthPacket(id=4, secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    reply = request.CreateReply()  # pyrad signs replies to Access-Request
    reply["Session-Timeout"] = 3600
    raw = reply.ReplyPacket()
    assert crypto.verify_message_authenticator(raw, SECRET, request_authenticator=REQUEST_AUTHENTICATOR) is True
    assert crypto.verify_message_authenticator(raw, SECRET, request_authenticator=bytes(16)) is False
    with pytest.raises(ValueError):
        crypto.verify_message_authenticator(raw, SECRET)


def test_build_signed_response_accepted_by_pyrad(dictionary):
    request = AuthPacket(id=4, secret=SECRET, authenticator=REQUEST_AUTHENTICATOR, dict=dictionary)
    reply = request.CreateReply(message_authenticator=False)
    reply["Framed-IP-Address"] = "100.64.0.10"
    raw = reply.ReplyPacket()
    signed = crypto.sign_response(
        crypto.add_message_authenticator(raw, SECRET, REQUEST_AUTHENTICATOR), REQUEST_AUTHENTICATOR, SECRET
    )
    assert crypto.verify_message_authenticator(signed, SECRET, request_authenticator=REQUEST_AUTHENTICATOR)
    assert crypto.verify_response_authenticator(signed, REQUEST_AUTHENTICATOR, SECRET)
    decoded = request.CreateReply(packet=signed)
    assert request.VerifyReply(decoded, signed, enforce_ma=True)


def test_accounting_request_with_message_authenticator(dictionary):
    pkt = AcctPacket(id=5, secret=SECRET, dict=dictionary, message_authenticator=True)
    pkt["User-Name"] = "alice"
    pkt["Acct-Status-Type"] = "Start"
    pkt["Acct-Session-Id"] = "81a00001"
    raw = pkt.RequestPacket()
    assert crypto.verify_accounting_request_authenticator(raw, SECRET)
    assert crypto.verify_message_authenticator(raw, SECRET) is True


def test_duplicate_or_short_message_authenticator_is_false(dictionary):
    raw = _access_request(dictionary)
    index = raw.index(b"\x50\x12")
    ma = raw[index : index + 18]
    doubled = raw + ma
    doubled = doubled[:2] + len(doubled).to_bytes(2, "big") + doubled[4:]
    assert crypto.verify_message_authenticator(doubled, SECRET) is False
    short = raw[:2] + (20 + 6).to_bytes(2, "big") + raw[4:20] + b"\x50\x06abcd"
    assert crypto.verify_message_authenticator(short, SECRET) is False


@pytest.mark.parametrize(
    "raw",
    [b"", bytes(19), b"\x01\x01\x00\x10" + bytes(16), b"\x01\x01\x00\x30" + bytes(16), b"\x01\x01\x00\x17" + bytes(19)],
)
def test_malformed_packets_are_rejected(raw):
    assert crypto.verify_message_authenticator(raw, SECRET) is False
    assert crypto.verify_accounting_request_authenticator(raw, SECRET) is False
    assert crypto.verify_coa_request_authenticator(raw, SECRET) is False
    with pytest.raises(ValueError):
        crypto.add_message_authenticator(raw, SECRET)


# --- Request and Response Authenticators ---------------------------------------


def _accounting_request(dictionary) -> bytes:
    pkt = AcctPacket(id=77, secret=SECRET, dict=dictionary)
    pkt["User-Name"] = "alice"
    pkt["Acct-Status-Type"] = "Interim-Update"
    pkt["Acct-Session-Id"] = "81a00002"
    pkt["Acct-Input-Octets"] = 123456
    pkt["Acct-Input-Gigawords"] = 2
    return pkt.RequestPacket()


def test_accounting_request_authenticator(dictionary):
    raw = _accounting_request(dictionary)
    expected = hashlib.md5(raw[:4] + bytes(16) + raw[20:] + SECRET).digest()
    assert raw[4:20] == expected
    assert crypto.accounting_request_authenticator(raw, SECRET) == expected
    assert crypto.verify_accounting_request_authenticator(raw, SECRET)
    assert crypto.verify_accounting_request_authenticator(raw + b"\x00padding", SECRET)  # octets past Length
    assert not crypto.verify_accounting_request_authenticator(raw, b"wrong")
    tampered = raw[:-1] + bytes((raw[-1] ^ 1,))
    assert not crypto.verify_accounting_request_authenticator(tampered, SECRET)
    # not an Accounting-Request: refused even if the hash matches
    as_coa = crypto.sign_request(b"\x2b" + raw[1:], SECRET)
    assert not crypto.verify_accounting_request_authenticator(as_coa, SECRET)
    assert crypto.verify_coa_request_authenticator(as_coa, SECRET)


@pytest.mark.parametrize("code", [crypto.DISCONNECT_REQUEST, crypto.COA_REQUEST])
def test_coa_request_authenticator_matches_pyrad(dictionary, code):
    pkt = CoAPacket(code=code, id=12, secret=SECRET, dict=dictionary)
    pkt["User-Name"] = "alice"
    pkt["Acct-Session-Id"] = "81a00003"
    raw = pkt.RequestPacket()
    assert crypto.verify_coa_request_authenticator(raw, SECRET)
    assert not crypto.verify_coa_request_authenticator(raw, b"wrong")
    decoded = CoAPacket(packet=crypto.sign_request(raw, SECRET), secret=SECRET, dict=dictionary)
    assert decoded.VerifyCoARequest()


def test_coa_request_with_message_authenticator_built_here(dictionary):
    pkt = CoAPacket(code=crypto.DISCONNECT_REQUEST, id=13, secret=SECRET, dict=dictionary)
    pkt["User-Name"] = "alice"
    pkt["Framed-IP-Address"] = "100.64.0.9"
    raw = crypto.sign_request(crypto.add_message_authenticator(pkt.RequestPacket(), SECRET), SECRET)
    assert crypto.verify_coa_request_authenticator(raw, SECRET)
    assert crypto.verify_message_authenticator(raw, SECRET) is True
    decoded = CoAPacket(packet=raw, secret=SECRET, dict=dictionary)
    assert decoded.VerifyCoARequest()
    assert decoded.verify_message_authenticator()


def test_response_authenticator_matches_pyrad(dictionary):
    request = AcctPacket(id=21, secret=SECRET, dict=dictionary)
    request["Acct-Status-Type"] = "Stop"
    request.RequestPacket()
    raw = request.CreateReply().ReplyPacket()
    assert crypto.response_authenticator(raw, request.authenticator, SECRET) == raw[4:20]
    assert crypto.verify_response_authenticator(raw, request.authenticator, SECRET)
    assert not crypto.verify_response_authenticator(raw, bytes(16), SECRET)
    assert not crypto.verify_response_authenticator(raw, request.authenticator, b"wrong")
    unsigned = raw[:4] + bytes(16) + raw[20:]
    assert crypto.sign_response(unsigned, request.authenticator, SECRET) == raw
