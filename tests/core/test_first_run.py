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


WRITER = """
import django
django.setup()
from django.db import transaction
from ispcore.core.models import AuditEvent
for i in range(150):
    with transaction.atomic():
        n = AuditEvent.objects.count()          # a read first...
        AuditEvent.objects.create(action="first-run.check", object_type="t", object_id=str(n))  # ...then a write
print("ok")
"""


def test_processes_sharing_the_sqlite_file_wait_instead_of_failing(tmp_path):
    """Web, worker, beat and radiusd share the first-run database: a transaction that reads and
    then writes must wait for the other writer, not fail with 'database is locked'."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY"}}
    env.update({"DEBUG": "true", "ISP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "ispcore.settings"})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE, env=env, check=True,
                   capture_output=True, timeout=300)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER], cwd=BASE, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [w.communicate(timeout=240) for w in writers]
    for (out, err), writer in zip(results, writers, strict=True):
        assert writer.returncode == 0 and out.strip() == "ok", err[-2000:]
    count = subprocess.run([sys.executable, "-c", "import django; django.setup(); from ispcore.core.models import "
                            "AuditEvent; print(AuditEvent.objects.filter(action='first-run.check').count())"],
                           cwd=BASE, env=env, capture_output=True, text=True, timeout=60)
    assert count.stdout.strip() == "450"


SMS_TASKS = """
import django
django.setup()
from notifications import tasks
tasks.dispatch()      # would claim with SKIP LOCKED and array parameters on PostgreSQL
tasks.housekeeping()
print("ok", tasks._SENDER is None)
"""


def test_sms_tasks_leave_messages_queued_on_the_first_run_database(tmp_path):
    """Beat runs the SMS sender every 10 s under make run: on SQLite it must return quietly."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY"}}
    env.update({"DEBUG": "true", "ISP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "ispcore.settings"})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE, env=env, check=True,
                   capture_output=True, timeout=300)
    run = subprocess.run([sys.executable, "-c", SMS_TASKS], cwd=BASE, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok True"
    assert "SMS sending needs PostgreSQL" in run.stderr


AUTH_LOG = """
import time
import django
django.setup()
from radius.authlog import AuthLogWriter
from radius.models import AuthLog
writer = AuthLogWriter()
writer.log((None, "127.0.0.1", "demo\\x00-pppoe", None, True, "ok", "pap", "AA:BB", time.time()))
writer.log((None, "127.0.0.1", "nobody", None, False, "unknown_user", "pap", "", time.time()))
print(writer.flush(), sorted(AuthLog.objects.values_list("username", "accepted")))
"""


def test_radius_auth_log_is_written_on_the_first_run_database(tmp_path):
    """make run's RADIUS server logs every decision to SQLite too (COPY is PostgreSQL's)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "ENCRYPTION_KEY"}}
    env.update({"DEBUG": "true", "ISP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "ispcore.settings"})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE, env=env, check=True,
                   capture_output=True, timeout=300)
    run = subprocess.run([sys.executable, "-c", AUTH_LOG], cwd=BASE, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "2 [('demo-pppoe', True), ('nobody', False)]"
