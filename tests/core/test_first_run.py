"""`make run` starts on an embedded SQLite file: every migration must apply there too
(PostgreSQL-only DDL is guarded by the migration, not left to fail on a user's first run)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]


def test_every_migration_applies_to_the_first_run_sqlite_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY"}}
    env.update({"DEBUG": "true", "ISP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "ispcore.settings"})
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    assert (tmp_path / "isp.sqlite3").stat().st_size > 0
    pending = subprocess.run([sys.executable, "manage.py", "migrate", "--check"], cwd=BASE, env=env,
                             capture_output=True, text=True, timeout=120)
    assert pending.returncode == 0, pending.stdout + pending.stderr
