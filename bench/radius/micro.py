"""Micro-benchmarks of the RADIUS hot path (CPU time, so a busy machine matters less).

    DJANGO_SETTINGS_MODULE=ispcore.settings .venv/bin/python bench/radius/micro.py

Prints microseconds per call (best of 5 rounds of process CPU time) for the MS-CHAPv2
primitives with each implementation (libcrypto via ctypes, pycryptodome), and for a whole
decision (decode + decide + reply) per method against an in-memory customer.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")
os.environ.setdefault("DEBUG", "true")

import django

django.setup()

from radius import crypto  # noqa: E402
from radius.auth import decide, reject_attributes  # noqa: E402
from radius.packet import decode, encode_attributes  # noqa: E402
from radius.server import build_reply  # noqa: E402
from radius.snapshot import CustomerEntry, NasEntry  # noqa: E402
from radius.testing import access_request  # noqa: E402


def per_call_us(fn, n: int = 5000, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def main() -> None:
    challenge, nt_hash, key8 = secrets.token_bytes(8), secrets.token_bytes(16), secrets.token_bytes(8)
    print("| primitive | libcrypto (ctypes) | pycryptodome |")
    print("|---|---|---|")
    if crypto._LIBCRYPTO is not None:
        print(f"| DES, one block | {per_call_us(lambda: crypto._des_ecb_libcrypto(key8, challenge)):.1f} us "
              f"| {per_call_us(lambda: crypto._des_ecb_pycryptodome(key8, challenge)):.1f} us |")
        print(f"| MD4 of 16 octets | {per_call_us(lambda: crypto._md4_libcrypto(nt_hash)):.1f} us "
              f"| {per_call_us(lambda: crypto._md4_pycryptodome(nt_hash)):.1f} us |")
    saved = crypto.des_ecb_encrypt
    fast = per_call_us(lambda: crypto.challenge_response(challenge, nt_hash))
    crypto.des_ecb_encrypt = crypto._des_ecb_pycryptodome
    slow = per_call_us(lambda: crypto.challenge_response(challenge, nt_hash), n=1000)
    crypto.des_ecb_encrypt = saved
    print(f"| ChallengeResponse (3 DES) | {fast:.1f} us | {slow:.1f} us |")

    secret = b"testing123"
    nas = NasEntry(1, 1, "127.0.0.2", secret, False, "mikrotik", 3799)
    customer = CustomerEntry(1, 1, "user000001", "pw000001", "pppoe", "active", time.time() + 86400 * 30, 1, "", None,
                             1, True, "10M/10M", None, None, None)
    print()
    print("| whole decision (decode, decide, encode + sign reply) | CPU us |")
    print("|---|---|")
    for method in ("pap", "chap", "mschapv2"):
        raw, _ = access_request("user000001", secret, password="pw000001", method=method,
                                extra=[("Service-Type", 2), ("Framed-Protocol", 1)])

        def one(raw=raw):
            request = decode(raw)
            decision = decide(request, nas, customer, time.time())
            attrs = decision.attributes if decision.accepted else reject_attributes(decision)
            assert decision.accepted, decision.reason
            build_reply(2, request.ident, request.authenticator, secret, encode_attributes(attrs),
                        message_authenticator=True)

        print(f"| {method} | {per_call_us(one, n=2000):.1f} |")


if __name__ == "__main__":
    main()
