"""Test setup: the real PostgreSQL and the real Redis, never SQLite or fakes."""
import os

import pytest


def pytest_configure(config):
    from django.conf import settings

    # Real password hashing costs ~0.3 s a user; the tests create hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    engine = settings.DATABASES["default"]["ENGINE"]
    if os.environ.get("CI") or os.environ.get("REQUIRE_POSTGRES", "1") == "1":
        if not engine.endswith("postgresql"):
            raise pytest.UsageError(
                "The tests run on PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp "
                "(`make test` does this for you)."
            )


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
