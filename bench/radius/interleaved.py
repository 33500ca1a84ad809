"""Interleaved side-by-side: the three servers run at once (each pinned to core 0, idle while
not measured) and every step is run for each server in turn, ROUNDS times, so the load that
other work puts on a shared machine changes all three figures alike. Reports the median per
server and step, and our ratio to each FreeRADIUS configuration.

Servers: FreeRADIUS + rlm_sql with the stock per-request ``INSERT INTO radpostauth``
(``FR_DIR=/tmp/fr-bench-pa POSTAUTH_SQL=1 AUTH_PORT=18320 ACCT_PORT=18330 INNER_PORT=18340
bench/freeradius/setup.sh``), the same without it (``bench/freeradius/setup.sh``, 18220/18230),
and our radiusd --workers 1 (18120/18130, database isp_radius_bench seeded with
``seed_scale --customers 100000``).

    .venv/bin/python bench/radius/interleaved.py --rounds 3 --duration 10 --out /tmp/inter.jsonl

Steps per round: PAP peak (window 512), PAP at 80 % of that server's peak of the same round
(fixed rate, p99 measured from the schedule), MS-CHAPv2 peak; then once per server the
reconnect storm (100,000 distinct users once each); then, rounds times, accounting (20,000
Starts, then Interim-Updates, each answered after its commit). Accounting comes last because
the sessions it opens would make our server (which enforces Simultaneous-Use) reject those
users in later authentication steps; FreeRADIUS's bench config does not check it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = os.environ.get("PY", str(ROOT / ".venv" / "bin" / "python"))
SERVERS = {
    "fr-postauth": {"auth": "127.0.0.1:18320", "acct": "127.0.0.1:18330", "fr_dir": "/tmp/fr-bench-pa"},
    "fr": {"auth": "127.0.0.1:18220", "acct": "127.0.0.1:18230", "fr_dir": "/tmp/fr-bench"},
    "ours": {"auth": "127.0.0.1:18120", "acct": "127.0.0.1:18130"},
    # A/B only (--servers ours,ours-thread): the auth log written by a thread of the worker
    # (RADIUS_AUTH_LOG_PROCESS=false) instead of radiusd's default copier process
    "ours-thread": {"auth": "127.0.0.1:18140", "acct": "127.0.0.1:18150",
                    "env": {"RADIUS_AUTH_LOG_PROCESS": "false"}},
}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (radiusd's auth-log copier is a child of the worker)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of the server's processes (radiusd's includes its auth-log copier's)."""
    total = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> tuple[int, int]:
    """Resident memory of the server in total: the sum over its processes of VmRSS, and
    of VmHWM (each process's own peak: the sum is an upper bound of the total's peak)."""
    rss = hwm = 0
    for member in process_tree(pid):
        status = Path(f"/proc/{member}/status").read_text()
        get = lambda key: int(next(line.split()[1] for line in status.splitlines() if line.startswith(key)))  # noqa: E731,B023
        rss, hwm = rss + get("VmRSS:"), hwm + get("VmHWM:")
    return rss, hwm


def psql(db: str, sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql], check=True)


def reset_databases() -> None:
    psql("radius_ref", "TRUNCATE radacct, radpostauth RESTART IDENTITY")
    psql("isp_radius_bench",
         "TRUNCATE radius_accountingsession, radius_dailyusage, radius_authlog, radius_dynamicauthrequest")
    psql("isp_radius_bench", "VACUUM ANALYZE radius_accountingsession")
    psql("radius_ref", "VACUUM ANALYZE radacct")


def ours_env() -> dict:
    import base64
    import hashlib

    key = "insecure-development-key-only-for-DEBUG"
    return {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/isp_radius_bench",
        "REDIS_URL": "redis://127.0.0.1:6379/13", "DEBUG": "false", "SECRET_KEY": key,
        "ENCRYPTION_KEY": base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode(),
        "RADIUS_REJECT_DELAY_MS": "0",
    }


def ports_in_use(ports: list[int]) -> list[int]:
    """UDP ports someone listens on. radiusd binds with SO_REUSEPORT, so a second server on
    the same port would silently take a share of the requests: refuse to measure then."""
    out = subprocess.run(["ss", "-Hulnp"], capture_output=True, text=True).stdout
    return [p for p in ports if f":{p} " in out]


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def start_servers(log_dir: Path, names: list[str]) -> dict[str, int]:
    busy = ports_in_use([port(SERVERS[name][kind]) for name in names for kind in ("auth", "acct")])
    if busy:
        raise SystemExit(f"UDP ports already in use (a server left running?): {busy}")
    pids = {}
    for name in names:
        if "fr_dir" in SERVERS[name]:
            fr_dir = SERVERS[name]["fr_dir"]
            subprocess.run([str(ROOT / "bench/freeradius/start.sh")], env={**os.environ, "FR_DIR": fr_dir},
                           check=True)
            pids[name] = int(Path(fr_dir, "run/radiusd.pid").read_text())
            continue
        log_path = log_dir / f"interleaved-{name}-server.log"
        proc = subprocess.Popen(
            ["taskset", "-c", "0", PY, "manage.py", "radiusd", "--bind", "127.0.0.1",
             "--auth-port", str(port(SERVERS[name]["auth"])), "--acct-port", str(port(SERVERS[name]["acct"])),
             "--workers", "1", "--metrics-port", "0"],
            cwd=ROOT, env={**ours_env(), **SERVERS[name].get("env", {})}, stdout=log_path.open("w"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "listening on" not in log_path.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: radiusd did not start")
            time.sleep(0.5)
        pids[name] = proc.pid
    return pids


def stop_servers(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        if "fr_dir" in SERVERS[name]:
            subprocess.run([str(ROOT / "bench/freeradius/stop.sh")],
                           env={**os.environ, "FR_DIR": SERVERS[name]["fr_dir"]})
        else:
            os.kill(pid, signal.SIGTERM)


def loadgen(args: list[str]) -> list[dict]:
    out = subprocess.run(["taskset", "-c", "1", "timeout", "400", PY, str(ROOT / "bench/freeradius/loadgen.py"),
                          "--json", *args], capture_output=True, text=True, cwd=ROOT)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--out", default="/tmp/interleaved.jsonl")
    p.add_argument("--servers", default="fr-postauth,fr,ours")
    p.add_argument("--no-storm", action="store_true")
    p.add_argument("--no-acct", action="store_true", help="skip the accounting steps")
    args = p.parse_args()
    names = args.servers.split(",")
    out_path = Path(args.out)
    out = out_path.open("w")
    reset_databases()
    pids = start_servers(out_path.parent, names)
    results: list[dict] = []

    def step(server: str, name: str, rnd: int, lg_args: list[str]) -> list[dict]:
        la, cpu0 = loadavg(), cpu_seconds(pids[server])
        rows = loadgen(lg_args)
        cpu = cpu_seconds(pids[server]) - cpu0
        rss, hwm = rss_kb(pids[server])  # after every step: where memory grows
        answered = sum(r["answered"] for r in rows) or 1
        for r in rows:
            r.update(server=server, step=name if r["label"] != "acct-start" else "acct-start", round=rnd,
                     loadavg=la, server_cpu_us=round(cpu * 1e6 / answered, 1), time=time.strftime("%H:%M:%S"),
                     rss_kB=rss, hwm_kB=hwm)
            out.write(json.dumps(r) + "\n")
            out.flush()
            print(f"{server:12} {r['step']:14} round {rnd} {r['answered_per_s']:>9.0f}/s p99 {r['p99_ms']:>8} ms "
                  f"sched p99 {r.get('sched_p99_ms', '-')} ms lost {r['lost']} codes {r['codes']} load {la} "
                  f"rss {rss // 1024} MB (peak {hwm // 1024})", flush=True)
        results.extend(rows)
        return rows

    try:
        for name in names:  # warm up (first requests after a start are slower)
            loadgen(["--target", SERVERS[name]["auth"], "--kind", "pap", "--count", "20000", "--duration", "3",
                     "--window", "512"])
        dur = str(args.duration)
        for rnd in range(1, args.rounds + 1):
            off = str(rnd * 7919)
            peaks = {}
            for name in names:
                rows = step(name, "pap-peak", rnd, ["--target", SERVERS[name]["auth"], "--kind", "pap", "--count",
                                                    "200000", "--duration", dur, "--window", "512", "--offset", off])
                peaks[name] = rows[0]["answered_per_s"] if rows else 0
            for name in names:
                step(name, "pap-80pct", rnd, ["--target", SERVERS[name]["auth"], "--kind", "pap", "--count", "200000",
                                              "--duration", dur, "--window", "2048", "--rate",
                                              str(int(peaks[name] * 0.8)), "--offset", off])
            for name in names:
                step(name, "mschapv2-peak", rnd, ["--target", SERVERS[name]["auth"], "--kind", "mschapv2", "--count",
                                                  "100000", "--duration", dur, "--window", "512", "--offset", off])
        if not args.no_storm:
            for name in names:
                step(name, "storm-100k", 1, ["--target", SERVERS[name]["auth"], "--kind", "pap", "--storm",
                                             "--users", "100000", "--window", "1024", "--timeout", "3",
                                             "--retries", "2"])
        for rnd in range(1, (0 if args.no_acct else args.rounds) + 1):
            for name in names:
                step(name, "acct-interim", rnd, ["--target", SERVERS[name]["acct"], "--kind", "acct", "--sessions",
                                                 "20000", "--count", "200000", "--duration", dur, "--window", "512",
                                                 "--offset", str(rnd * 20000)])
        for name in names:
            rss, hwm = rss_kb(pids[name])
            row = {"server": name, "step": "rss", "VmRSS_kB": rss, "VmHWM_kB": hwm,
                   "processes": len(process_tree(pids[name]))}
            out.write(json.dumps(row) + "\n")
            print(row)
            results.append(row)
    finally:
        stop_servers(pids)
    summarize(results, names)


def summarize(results: list[dict], names: list[str]) -> None:
    steps = ["pap-peak", "pap-80pct", "mschapv2-peak", "storm-100k", "acct-start", "acct-interim"]
    print("\n| step | " + " | ".join(names) + " | ours / fr-postauth | ours / fr |")
    print("|---|" + "---|" * (len(names) + 2))
    for s in steps:
        cells, med = [], {}
        for name in names:
            rows = [r for r in results if r.get("server") == name and r.get("step") == s]
            if not rows:
                cells.append("")
                continue
            rate = statistics.median(r["answered_per_s"] for r in rows)
            p99 = statistics.median(r.get("sched_p99_ms") or r["p99_ms"] for r in rows)
            lost = sum(r["lost"] for r in rows)
            med[name] = rate
            extra = f", {rows[0]['seconds']:.1f} s for all" if s == "storm-100k" else ""
            cells.append(f"{rate:,.0f}/s, p99 {p99:.1f} ms{extra}, lost {lost} (n={len(rows)})")
        ratios = [f"{med['ours'] / med[ref]:.2f}x" if "ours" in med and med.get(ref) else ""
                  for ref in ("fr-postauth", "fr")]
        if s == "storm-100k":  # a time: fewer seconds is better, so the ratio is theirs / ours
            ratios = [f"{ours_rate:.2f}x faster" if ours_rate else "" for ours_rate in
                      ((med["ours"] / med[ref]) if "ours" in med and med.get(ref) else 0 for ref in ("fr-postauth", "fr"))]
        print(f"| {s} | " + " | ".join(cells) + f" | {ratios[0]} | {ratios[1]} |")
    for r in results:
        if r.get("step") == "rss":
            print(f"RSS {r['server']}: {r['VmRSS_kB'] / 1024:.0f} MB (peak {r['VmHWM_kB'] / 1024:.0f} MB)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        rows = [json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines() if line.startswith("{")]
        summarize(rows, [n for n in SERVERS if any(r.get("server") == n for r in rows)])
    else:
        main()
