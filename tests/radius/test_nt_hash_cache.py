"""MS-CHAPv2 with the NT hash computed once per customer entry, not three times per login."""
import dataclasses
import secrets

from radius import crypto
from radius.snapshot import CustomerEntry


def entry(password: str) -> CustomerEntry:
    return CustomerEntry(1, 1, "alice", password, "pppoe", "active", None, 1, "", None, 1, True, "", None, None, None)


def test_hash_variants_agree_with_the_password_variants():
    challenge = secrets.token_bytes(16)
    response = crypto.mschapv2_build_response(b"alice", "s3cret", challenge)
    nt = crypto.nt_password_hash("s3cret")
    assert crypto.mschapv2_verify_hash(b"alice", nt, challenge, response) is True
    assert crypto.mschapv2_verify_hash(b"alice", crypto.nt_password_hash("other"), challenge, response) is False
    assert crypto.mschapv2_success_hash(b"alice", nt, challenge, response) == crypto.mschapv2_success(
        b"alice", "s3cret", challenge, response)
    nt_response = crypto.parse_ms_chap2_response(response)[3]
    assert crypto.mppe_keys_hash(nt, nt_response) == crypto.mppe_keys("s3cret", nt_response)


def test_prepared_values_give_the_same_answers_as_the_rfc_functions():
    """mschapv2_prepare + *_prepared (what the server uses) against the RFC 2759 / 3079 / 2548
    functions, for right and wrong passwords and many users."""
    secret, request_authenticator = b"testing123", bytes(range(16))
    for n in range(50):
        user, password = f"user{n}".encode(), f"pw-{n}-পাসওয়ার্ড"
        challenge = bytes((n + i) % 256 for i in range(16))
        response = crypto.mschapv2_build_response(user, password, challenge, ident=n)
        prepared = crypto.mschapv2_prepare(crypto.nt_password_hash(password))
        assert prepared[:16] == crypto.nt_password_hash(password)
        assert crypto.mschapv2_verify_prepared(user, prepared, challenge, response)
        wrong = crypto.mschapv2_prepare(crypto.nt_password_hash(password + "x"))
        assert not crypto.mschapv2_verify_prepared(user, wrong, challenge, response)
        assert not crypto.mschapv2_verify_prepared(user, prepared, challenge[:15], response)
        success, send, recv = crypto.mschapv2_accept_prepared(user, prepared, challenge, response, secret,
                                                              request_authenticator)
        assert success == crypto.mschapv2_success(user, password, challenge, response)
        assert crypto.mschapv2_check_success(success, user, password, challenge, response)
        nt_response = crypto.parse_ms_chap2_response(response)[3]
        keys = crypto.mppe_keys(password, nt_response)
        assert send[0] & 0x80 and recv[0] & 0x80 and send[:2] != recv[:2]
        assert crypto.mppe_decrypt_key(send, secret, request_authenticator) == keys[0]
        assert crypto.mppe_decrypt_key(recv, secret, request_authenticator) == keys[1]


def test_the_entry_caches_its_hash_and_a_new_entry_recomputes_it():
    first = entry("s3cret")
    assert first.nt_hash == crypto.nt_password_hash("s3cret")
    assert first.mschap == crypto.mschapv2_prepare(crypto.nt_password_hash("s3cret"))
    assert first.mschap is first.mschap
    copied = dataclasses.replace(first)  # a package change copies the entry: same password
    assert copied.mschap is first.mschap
    changed = entry("n3w")  # a password change reloads the customer into a new entry
    assert changed.nt_hash == crypto.nt_password_hash("n3w")


def test_the_fast_mppe_encryption_equals_rfc_2548_for_16_octet_keys():
    for n in range(50):
        key, secret = bytes((n * 7 + i) % 256 for i in range(16)), f"secret-{n}".encode()
        authenticator, salt = bytes((n + 3 * i) % 256 for i in range(16)), bytes((0x80 | n, n))
        assert crypto._mppe_encrypt_key16(key, secret, authenticator, salt) == crypto.mppe_encrypt_key(
            key, secret, authenticator, salt)


def test_the_remembered_challenge_is_never_another_logins():
    """The check and the Success of one login share a computed challenge; a second login
    (another user or challenge) in between must get its own."""
    prepared = crypto.mschapv2_prepare(crypto.nt_password_hash("pw"))
    challenge = bytes(range(16))
    first = crypto.mschapv2_build_response(b"alice", "pw", challenge, ident=1)
    second = crypto.mschapv2_build_response(b"bob", "pw", challenge, ident=2)
    assert crypto.mschapv2_verify_prepared(b"alice", prepared, challenge, first)
    assert crypto.mschapv2_verify_prepared(b"bob", prepared, challenge, second)
    success, _, _ = crypto.mschapv2_accept_prepared(b"alice", prepared, challenge, first, b"s", bytes(16))
    assert success == crypto.mschapv2_success(b"alice", "pw", challenge, first)
