"""`manage.py radiusd` as a real process: two workers on the same ports
(SO_REUSEPORT), accounting, `--stats`, the Prometheus endpoint, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from radius import crypto
from radius.models import AccountingSession, AuthLog
from radius.testing import (
    PASSWORD,
    SECRET,
    UdpClient,
    access_request,
    accounting_request,
    build_world,
    status_server,
    table_locked,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BASE = Path(__file__).resolve().parents[2]
PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp_path) -> dict:
    db = django_settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["ISP_VAR_DIR"] = str(tmp_path)
    env["DEBUG"] = "true"
    return env


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BASE / "manage.py"), *args], env=env, cwd=BASE, capture_output=True,
                          text=True, timeout=60)


def test_radiusd_two_workers(tmp_path):
    build_world()
    auth_port, acct_port, metrics_port = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    env = env_for(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(BASE / "manage.py"), "radiusd", "--bind", "127.0.0.1", "--auth-port", str(auth_port),
         "--acct-port", str(acct_port), "--workers", "2", "--metrics-port", str(metrics_port)],
        env=env, cwd=BASE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    copiers: list[int] = []
    try:
        deadline = time.monotonic() + 40
        up = False
        while time.monotonic() < deadline and not up:
            with UdpClient(auth_port, timeout=0.3) as c:
                up = c.ask(status_server(SECRET)) is not None
        assert up, "radiusd did not come up"
        time.sleep(1.0)  # let the second worker bind too
        accepted = 0
        for _ in range(20):  # different source ports spread over the workers
            with UdpClient(auth_port) as c:
                raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
                reply = c.ask(raw)
                accepted += reply is not None and reply[0] == crypto.ACCESS_ACCEPT
        assert accepted == 20
        with UdpClient(acct_port) as c:
            reply = c.ask(accounting_request(SECRET, "start", username="alice", session_id="proc-1"))
            assert reply is not None and reply[0] == crypto.ACCOUNTING_RESPONSE
        assert AccountingSession.objects.filter(acct_session_id="proc-1").exists()
        time.sleep(1.5)  # stats files are written every second

        stats = manage("radiusd", "--stats", "--json", env=env)
        assert stats.returncode == 0, stats.stderr
        data = json.loads(stats.stdout)
        assert data["workers"] == 2
        assert data["counters"]["accepts"] == 20
        assert data["counters"]["acct{start}"] == 1

        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert "radius_accepts_total 20" in text
        assert 'radius_auth_latency_seconds_bucket{le="+Inf"} 20' in text
        assert "radius_workers 2" in text
        # on PostgreSQL each worker writes its auth log through a copier process of its own
        workers = [pid for pid in _children(proc.pid) if "spawn_main" in _cmdline(pid)]
        copiers = _copiers(workers)
        assert len(workers) == 2 and len(copiers) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    # every decision was logged, and stopping left no copier behind
    assert AuthLog.objects.filter(username="alice", accepted=True).count() == 20
    assert not any(_alive(pid) for pid in copiers)


def _start_radiusd(tmp_path, auth_port, acct_port):
    proc = subprocess.Popen(
        [sys.executable, str(BASE / "manage.py"), "radiusd", "--bind", "127.0.0.1", "--auth-port", str(auth_port),
         "--acct-port", str(acct_port), "--workers", "1", "--metrics-port", "0"],  # one process: the worker itself
        env=env_for(tmp_path), cwd=BASE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with UdpClient(acct_port, timeout=0.3) as c:
            if c.ask(status_server(SECRET)) is not None:
                return proc
    proc.kill()
    raise AssertionError("radiusd did not come up")


def test_killed_between_receive_and_commit_no_reply_and_the_retransmission_is_stored_once(tmp_path):
    """The server gets an Interim-Update but cannot commit it (the sessions table is
    locked) and is killed (SIGKILL) meanwhile: the NAS got no reply and nothing was
    written. The NAS's retransmission (the same packet) to the restarted server is
    stored, and usage counted, exactly once, however often it comes."""
    from radius.models import DailyUsage

    world = build_world()
    auth_port, acct_port = free_port(), free_port()
    proc = _start_radiusd(tmp_path, auth_port, acct_port)
    interim = accounting_request(SECRET, "interim", username="alice", session_id="kill-1", ident=77,
                                 input_octets=5000, output_octets=7000, session_time=300)
    try:
        with UdpClient(acct_port) as nas:
            start = nas.ask(accounting_request(SECRET, "start", username="alice", session_id="kill-1"))
            assert start is not None and start[0] == crypto.ACCOUNTING_RESPONSE
            with table_locked("radius_accountingsession"):
                assert nas.ask(interim, timeout=1.5) is None, "answered before the record was committed"
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    session = AccountingSession.objects.get(acct_session_id="kill-1")
    assert (session.input_octets, session.output_octets, session.session_time) == (0, 0, 0)
    assert not DailyUsage.objects.filter(customer=world["alice"]).exists()

    proc = _start_radiusd(tmp_path, auth_port, acct_port)
    try:
        with UdpClient(acct_port) as nas:
            for _ in range(3):  # the NAS retries: the first is written, the others answered from the cache
                reply = nas.ask(interim)
                assert reply is not None and reply[0] == crypto.ACCOUNTING_RESPONSE
                assert crypto.verify_response_authenticator(reply, interim[4:20], SECRET)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    session.refresh_from_db()
    assert AccountingSession.objects.filter(acct_session_id="kill-1").count() == 1
    assert (session.input_octets, session.output_octets, session.session_time) == (5000, 7000, 300)
    usage = DailyUsage.objects.get(customer=world["alice"])
    assert (usage.input_octets, usage.output_octets, usage.session_time) == (5000, 7000, 300)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _copiers(workers: list[int]) -> list[int]:
    return [pid for worker in workers for pid in _children(worker) if "authlog_copier" in _cmdline(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    """SIGKILL to the supervising radiusd (no chance to stop its workers): the workers
    get SIGTERM from the kernel and exit instead of serving on as orphans."""
    build_world()
    auth_port, acct_port, metrics_port = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, str(BASE / "manage.py"), "radiusd", "--bind", "127.0.0.1", "--auth-port", str(auth_port),
         "--acct-port", str(acct_port), "--workers", "2", "--metrics-port", str(metrics_port)],
        env=env_for(tmp_path), cwd=BASE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            with UdpClient(auth_port, timeout=0.3) as c:
                if c.ask(status_server(SECRET)) is not None:
                    break
        workers = [pid for pid in _children(proc.pid) if "spawn_main" in _cmdline(pid)]
        assert len(workers) == 2
        deadline = time.monotonic() + 20  # the second worker may still be loading its snapshot
        while len(copiers := _copiers(workers)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(copiers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers + copiers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker survived its supervisor"
        assert not any(_alive(pid) for pid in copiers), "an auth-log copier survived its worker"
        with UdpClient(auth_port, timeout=0.5) as c:
            assert c.ask(status_server(SECRET)) is None  # nobody answers on the port any more
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
