"""Secrets encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Customer passwords must stay recoverable: CHAP and MS-CHAPv2 verify a response that
is computed from the clear password (or its NT hash), so a one-way hash cannot serve
them. We therefore store them encrypted with keys that live only in the environment
(ENCRYPTION_KEY); a database dump alone reveals nothing. See docs/SECURITY.md.
"""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ValueError("cannot decrypt a stored secret: ENCRYPTION_KEY does not match the one it was written with") from None


class EncryptedCharField(models.TextField):
    """Holds a short secret; the database sees only the Fernet token, Python sees the clear text."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
