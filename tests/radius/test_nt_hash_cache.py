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


def test_the_entry_caches_its_hash_and_a_new_entry_recomputes_it():
    first = entry("s3cret")
    assert first.nt_hash == crypto.nt_password_hash("s3cret")
    assert first.nt_hash is first.nt_hash
    copied = dataclasses.replace(first)  # a package change copies the entry: same password
    assert copied.nt_hash is first.nt_hash
    changed = entry("n3w")  # a password change reloads the customer into a new entry
    assert changed.nt_hash == crypto.nt_password_hash("n3w")
