"""PIN generation and the keyed PIN hash.

PINs are decimal digits drawn with ``secrets`` (a CSPRNG); the default 16 digits give
10^16 possibilities, so with the per-tenant unique index a collision needs about 10^8 cards
before it is likely, and a guesser limited to 5 tries per 15 minutes per customer and per
address gets nowhere.

The database keeps only ``HMAC-SHA256(key, "<tenant id>:<pin>")`` where ``key`` is derived
from ``settings.SECRET_KEY``. A database dump alone therefore cannot be brute-forced
offline (the key is not in it). Consequence: **rotating SECRET_KEY invalidates every PIN
not yet redeemed** (their hashes no longer match); sell out or void the open batches first,
or keep the old SECRET_KEY in ``CARD_PIN_KEYS`` (not implemented: one key today).
"""
from __future__ import annotations

import hmac
import secrets
from functools import lru_cache

from django.conf import settings

MIN_PIN_LENGTH = 12
DEFAULT_PIN_LENGTH = 16


@lru_cache(maxsize=4)
def _key(secret_key: str) -> bytes:
    return hmac.digest(secret_key.encode("utf-8"), b"ispcore.cards.pin-hash.v1", "sha256")


def pin_key() -> bytes:
    """The HMAC key for PIN hashes, derived from (not equal to) SECRET_KEY."""
    return _key(settings.SECRET_KEY)


def normalize_pin(raw: str) -> str:
    """What the customer typed, without spaces and dashes (cards print PINs in groups of 4)."""
    return "".join(ch for ch in str(raw) if ch not in " -\t")


def hash_pin(tenant_id: int, pin: str, *, key: bytes | None = None) -> str:
    """The stored form of a PIN: hex HMAC-SHA256, bound to the tenant."""
    return hmac.digest(key or pin_key(), f"{tenant_id}:{pin}".encode("ascii"), "sha256").hex()


def new_pins(count: int, length: int = DEFAULT_PIN_LENGTH) -> list[str]:
    """`count` distinct random PINs of `length` digits (leading zeros kept)."""
    if length < MIN_PIN_LENGTH:
        raise ValueError(f"a PIN must have at least {MIN_PIN_LENGTH} digits")
    bound = 10**length
    seen: set[int] = set()
    out: list[str] = []
    while len(out) < count:
        n = secrets.randbelow(bound)
        if n in seen:
            continue
        seen.add(n)
        out.append(str(n).zfill(length))
    return out


def format_pin(pin: str) -> str:
    """'1234567890123456' -> '1234 5678 9012 3456' for printing."""
    return " ".join(pin[i:i + 4] for i in range(0, len(pin), 4))
