"""Reading settings from the environment, failing fast on bad values.

Every value is parsed once, at import of the settings module; a bad value raises
`ImproperlyConfigured` naming the variable and what was wrong, so a misconfigured
process never starts half-working.
"""
from __future__ import annotations

import os
import zoneinfo
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no).")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is outside {minimum}..{maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_timezone(name: str, default: str) -> str:
    value = os.environ.get(name, default)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"{name}={value!r} is not an IANA time zone (e.g. Asia/Dhaka).") from None
    return value


def env_redis_url(name: str, default: str) -> str:
    value = os.environ.get(name, default)
    parsed = urlparse(value)
    if parsed.scheme not in {"redis", "rediss", "unix"} or (parsed.scheme != "unix" and not parsed.hostname):
        raise ImproperlyConfigured(f"{name}={value!r} is not a redis:// or rediss:// URL.")
    return value


def env_database(name: str, default: str) -> dict:
    import dj_database_url

    value = os.environ.get(name, default)
    try:
        config = dj_database_url.parse(value, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises several types for a bad URL
        raise ImproperlyConfigured(f"{name}={value!r} is not a database URL: {exc}") from None
    engine = config.get("ENGINE", "")
    if engine not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
        raise ImproperlyConfigured(f"{name}: only PostgreSQL and SQLite are supported, got {engine!r}.")
    if engine.endswith("sqlite3"):
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = False
        # Web, worker, beat and the RADIUS server share the file. Wait for a writer instead of
        # failing at once (timeout), take the write lock when a transaction begins (IMMEDIATE:
        # a read transaction that later writes would otherwise fail with "database is locked"
        # without waiting), and let readers go on while one process writes (WAL).
        options = config.setdefault("OPTIONS", {})
        options["timeout"] = 20
        options["transaction_mode"] = "IMMEDIATE"
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    return config
