"""Settings fail fast, naming the variable, instead of starting half-configured."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[2]


def load_settings(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY",
                                                                "ENCRYPTION_KEY", "TIME_ZONE", "ALLOWED_HOSTS"}}
    clean.update(env)
    code = "import django; django.setup(); from django.conf import settings; print(settings.TIME_ZONE)"
    return subprocess.run([sys.executable, "-c", code], cwd=BASE, env={**clean, "DJANGO_SETTINGS_MODULE": "ispcore.settings"},
                          capture_output=True, text=True, timeout=60)


GOOD = {"SECRET_KEY": "x" * 50, "ENCRYPTION_KEY": "G9bS0y6mB0a6v3cXhV3QF2P8o0d5W0p6z5J1Zy6q0uM=", "DEBUG": "false"}


def test_good_environment_loads():
    result = load_settings(**GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Asia/Dhaka"


@pytest.mark.parametrize("env,needle", [
    ({"DEBUG": "false", "SECRET_KEY": ""}, "SECRET_KEY"),
    ({**GOOD, "ENCRYPTION_KEY": ""}, "ENCRYPTION_KEY"),
    ({**GOOD, "ENCRYPTION_KEY": "not-a-key"}, "ENCRYPTION_KEY"),
    ({**GOOD, "DEBUG": "maybe"}, "DEBUG"),
    ({**GOOD, "TIME_ZONE": "Asia/Atlantis"}, "TIME_ZONE"),
    ({**GOOD, "DATABASE_URL": "mysql://root@localhost/isp"}, "DATABASE_URL"),
    ({**GOOD, "DATABASE_URL": "nonsense"}, "DATABASE_URL"),
    ({**GOOD, "REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
    ({**GOOD, "WEB_PORT": "99999"}, "WEB_PORT"),
])
def test_bad_values_stop_the_process_naming_the_variable(env, needle):
    result = load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and needle in result.stderr
