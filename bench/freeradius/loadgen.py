"""RADIUS load generator for comparing RADIUS servers (FreeRADIUS, ours).

Packets are built before the clock starts (PAP, MS-CHAPv2, or Accounting
Interim-Update), each distinct (own Request Authenticator, own id/port slot),
then sent over UDP as fast as allowed with a bounded window of outstanding
requests. Several sockets give more than 256 identifiers in flight; replies are
matched by (socket = source port, identifier) and their Response
Authenticator is checked. Timed-out requests are retransmitted unchanged (as a
NAS does, so a server answers them from its duplicate cache) and counted; after
--retries they count as lost.

Examples (FreeRADIUS from setup.sh on core 0, the generator on core 1):

    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18220 --kind pap --duration 10
    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18220 --kind pap --rate 8000 --duration 10
    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18220 --kind mschapv2 --count 60000
    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18230 --kind acct --sessions 20000 --duration 10
    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18220 --kind pap --storm --users 100000
    taskset -c 1 .venv/bin/python bench/freeradius/loadgen.py --target 127.0.0.1:18220 --kind pap --count 1000 --wrong-password

The send/receive loop runs in a C engine by default (--engine c): the packets,
still built and signed here, go to a temporary file and bench/radius/blast.c,
compiled on demand into bench/.build/blast (cc + libssl-dev), sends them with
the same window, slots, timeouts, retransmissions and --rate schedule as the
Python loop and prints the same statistics (plus "engine": "c"). It keeps the
generator's own CPU and scheduling jitter out of the latencies: at a fixed
--rate it wakes once per 100 us and sends what is due (latency still counted
from each request's due time) instead of in 1 ms bursts, and replies are timed by the kernel's
receive timestamp rather than when the loop gets to read them. --engine python
runs the loop below in this process (its results say "engine": "python");
without a compiler or the OpenSSL headers the C engine falls back to it with a
warning.

Users are <prefix>NNNNNN / <password-prefix>NNNNNN (seed_scale's user000001 /
pw000001 ...). The source address defaults to 127.0.0.2, seed_scale's NAS.
Needs only radius/crypto.py (pycryptodome) from this project.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from radius import crypto

ROOT = Path(__file__).resolve().parents[2]
ACCESS_REQUEST = 1
ACCOUNTING_REQUEST = 4
CODE_NAMES = {2: "Access-Accept", 3: "Access-Reject", 5: "Accounting-Response", 11: "Access-Challenge"}


# ---------------------------------------------------------------------------
# packet building
# ---------------------------------------------------------------------------


def _attr(t: int, value: bytes) -> bytes:
    return bytes((t, len(value) + 2)) + value


def _u32(t: int, value: int) -> bytes:
    return bytes((t, 6)) + struct.pack("!I", value & 0xFFFFFFFF)


def _vsa(vendor: int, t: int, value: bytes) -> bytes:
    inner = bytes((t, len(value) + 2)) + value
    return bytes((26, len(inner) + 6)) + struct.pack("!I", vendor) + inner


def _packet(code: int, ident: int, authenticator: bytes, attrs: bytes) -> bytes:
    return struct.pack("!BBH", code, ident, 20 + len(attrs)) + authenticator + attrs


class Builder:
    """Builds request number i for the slot (socket, identifier) it will use."""

    def __init__(self, args, nslots: int, nsock: int):
        self.a = args
        self.secret = args.secret.encode()
        self.nslots = nslots
        self.nsock = nsock
        self.nas_ip = socket.inet_aton(args.nas_ip)

    def ident(self, i: int) -> int:
        return (i % self.nslots) // self.nsock

    def user_number(self, i: int) -> int:
        return (self.a.offset + i) % self.a.users + self.a.first

    def auth(self, i: int) -> bytes:
        a = self.a
        u = self.user_number(i)
        name = f"{a.prefix}{u:06d}".encode()
        password = f"{a.password_prefix}{u:06d}"
        if a.wrong_password:
            password = "x" + password
        authenticator = os.urandom(16)
        attrs = [_attr(1, name)]
        if a.kind == "pap":
            attrs.append(_attr(2, crypto.pap_encrypt(password.encode(), self.secret, authenticator)))
        else:
            challenge = os.urandom(16)
            response = crypto.mschapv2_build_response(name, password, challenge, ident=i & 0xFF)
            attrs.append(_vsa(311, 11, challenge))
            attrs.append(_vsa(311, 25, response))
        hotspot = u % 10 in (7, 8)  # seed_scale's mix
        attrs += [
            _attr(4, self.nas_ip),
            _u32(5, u),
            _u32(61, 19 if hotspot else 15),  # NAS-Port-Type Wireless-802.11 / Ethernet
            _attr(31, f"02:00:{u >> 24 & 255:02x}:{u >> 16 & 255:02x}:{u >> 8 & 255:02x}:{u & 255:02x}".encode()),
            _attr(32, b"bench-nas"),
        ]
        if not hotspot:
            attrs += [_u32(6, 2), _u32(7, 1)]  # Framed-User, PPP
        raw = _packet(ACCESS_REQUEST, self.ident(i), authenticator, b"".join(attrs))
        if a.message_authenticator:
            raw = crypto.add_message_authenticator(raw, self.secret)
        return raw

    def acct(self, i: int, status: int, session: int, rnd: int) -> bytes:
        """Accounting-Request for session number `session`; rnd = interim number (counters grow)."""
        a = self.a
        u = (a.offset + session) % a.users + a.first
        sid = f"{a.session_base + session:08X}".encode()
        attrs = [
            _u32(40, status),
            _attr(1, f"{a.prefix}{u:06d}".encode()),
            _attr(44, sid),
            _attr(4, self.nas_ip),
            _u32(5, session),
            _u32(61, 15),
            _u32(6, 2),
            _u32(7, 1),
            _attr(8, socket.inet_aton(f"100.{64 + (session >> 16 & 63)}.{session >> 8 & 255}.{session & 255}")),
            _attr(31, f"02:00:00:{session >> 16 & 255:02x}:{session >> 8 & 255:02x}:{session & 255:02x}".encode()),
            _attr(32, b"bench-nas"),
            _u32(45, 1),  # Acct-Authentic RADIUS
        ]
        if status != 1:
            octets_in = rnd * 1_500_000_000 + session
            octets_out = rnd * 6_000_000_000 + session
            attrs += [
                _u32(46, rnd * a.interim_interval),
                _u32(42, octets_in), _u32(52, octets_in >> 32),
                _u32(43, octets_out), _u32(53, octets_out >> 32),
                _u32(47, rnd * 1_000_000), _u32(48, rnd * 4_000_000),
            ]
        raw = _packet(ACCOUNTING_REQUEST, self.ident(i), bytes(16), b"".join(attrs))
        return crypto.sign_request(raw, self.secret)


# ---------------------------------------------------------------------------
# sending
# ---------------------------------------------------------------------------


def run(packets: list[bytes], args, nsock: int, label: str, deadline_s: float | None) -> dict:
    """Send `packets` (packet i uses slot i % (nsock*256)) with a window; returns statistics."""
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    secret = args.secret.encode()
    socks = []
    for _ in range(nsock):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((args.source, 0))
        s.connect(target)
        s.setblocking(False)
        socks.append(s)
    fd_index = {s.fileno(): k for k, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)

    nslots = nsock * 256
    n = len(packets)
    window = min(args.window, nslots)
    busy = [-1] * nslots          # slot -> request index in flight
    first_tx = [0.0] * nslots     # slot -> time of first transmission
    due_at = [0.0] * nslots       # slot -> when --rate scheduled it (latency without coordinated omission)
    sched_lat: list[float] = []
    tries = [0] * nslots          # slot -> transmissions so far
    timeouts: deque = deque()     # (deadline, slot, index, try) in deadline order
    latencies: list[float] = []
    codes: dict[int, int] = {}
    bad_auth = retransmits = lost = stalled = late = 0
    inflight = 0
    nxt = 0
    rate = args.rate
    timeout = args.timeout
    retries = args.retries
    verify = not args.no_verify
    md5 = hashlib.md5
    perf = time.perf_counter
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = perf()
    stop_at = t0 + deadline_s if deadline_s else None
    last_answer = t0
    stopped = False

    while True:
        now = perf()
        if not stopped and stop_at is not None and now >= stop_at:
            stopped = True
        # 1. send new requests while the window (and the rate) allow
        if not stopped:
            while nxt < n and inflight < window:
                if rate:
                    due = t0 + nxt / rate
                    if due > now:
                        break
                    if now - due > 0.01:
                        late += 1
                else:
                    due = now
                slot = nxt % nslots
                if busy[slot] != -1:      # its (port, id) is still held by an older request
                    stalled += 1
                    break
                try:
                    socks[slot % nsock].send(packets[nxt])
                except BlockingIOError:
                    break
                busy[slot] = nxt
                first_tx[slot] = now
                due_at[slot] = due
                tries[slot] = 1
                timeouts.append((now + timeout, slot, nxt, 1))
                inflight += 1
                nxt += 1
                now = perf()
        if inflight == 0 and (stopped or nxt >= n):
            break
        # 2. timeouts: retransmit or give up
        while timeouts and timeouts[0][0] <= now:
            _, slot, idx, tr = timeouts.popleft()
            if busy[slot] != idx or tries[slot] != tr:
                continue
            if tr <= retries:
                try:
                    socks[slot % nsock].send(packets[idx])
                except BlockingIOError:
                    pass
                tries[slot] = tr + 1
                retransmits += 1
                timeouts.append((now + timeout, slot, idx, tr + 1))
            else:
                busy[slot] = -1
                inflight -= 1
                lost += 1
        # 3. wait for replies (not at all if more can be sent right now)
        can_send = not stopped and nxt < n and inflight < window and busy[nxt % nslots] == -1
        if can_send and not rate:
            wait = 0.0
        else:
            wait = 0.05
            if timeouts:
                wait = min(wait, max(0.0, timeouts[0][0] - now))
            if rate and can_send:
                wait = min(wait, max(0.0, t0 + nxt / rate - now))
        for fd, _ in ep.poll(wait):
            k = fd_index[fd]
            s = socks[k]
            for _ in range(64):
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                if len(data) < 20:
                    continue
                slot = data[1] * nsock + k
                idx = busy[slot]
                if idx == -1:
                    continue  # late duplicate reply
                req = packets[idx]
                if verify and md5(data[:4] + req[4:20] + data[20:] + secret).digest() != data[4:20]:
                    bad_auth += 1
                    continue
                t = perf()
                latencies.append(t - first_tx[slot])
                if rate:
                    sched_lat.append(t - due_at[slot])
                last_answer = t
                codes[data[0]] = codes.get(data[0], 0) + 1
                busy[slot] = -1
                inflight -= 1
    end = perf()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    for s in socks:
        s.close()
    ep.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else None

    answered = len(latencies)
    active = max(last_answer - t0, 1e-9)
    return {
        "label": label, "kind": args.kind, "target": args.target, "window": window, "sockets": nsock,
        "rate_offered": rate, "sent": nxt, "answered": answered, "lost": lost, "retransmits": retransmits,
        "bad_authenticator": bad_auth, "seconds": round(end - t0, 3), "answered_per_s": round(answered / active, 1),
        "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "codes": {CODE_NAMES.get(c, str(c)): v for c, v in sorted(codes.items())},
        "window_stalls": stalled, "late_sends": late,
        "sched_p99_ms": round(sorted(sched_lat)[int(0.99 * len(sched_lat))] * 1000, 3) if sched_lat else None,
        "loadgen_cpu_s": round(cpu, 2), "loadgen_us_per_req": round(cpu * 1e6 / max(answered, 1), 1),
    }


# ---------------------------------------------------------------------------
# the C engine (bench/radius/blast.c)
# ---------------------------------------------------------------------------

BLAST_SRC = ROOT / "bench" / "radius" / "blast.c"
BLAST_BIN = ROOT / "bench" / ".build" / "blast"


def build_blast() -> Path | None:
    """bench/.build/blast, compiled when missing or older than blast.c; None if it cannot be."""
    try:
        if BLAST_BIN.exists() and BLAST_BIN.stat().st_mtime >= BLAST_SRC.stat().st_mtime:
            return BLAST_BIN
    except OSError:
        pass
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("loadgen: no C compiler (cc/gcc) for the C engine (bench/radius/blast.c); "
              "falling back to --engine python", file=sys.stderr)
        return None
    BLAST_BIN.parent.mkdir(parents=True, exist_ok=True)
    tmp = BLAST_BIN.with_name(f"blast.{os.getpid()}.tmp")
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-std=gnu99", "-o", str(tmp), str(BLAST_SRC), "-lcrypto"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        out = subprocess.CompletedProcess(cmd, 1, "", str(e))
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        print(f"loadgen: cannot compile the C engine ({' '.join(cmd)}):\n{out.stderr.strip()}\n"
              "loadgen: needs a C compiler and the OpenSSL headers (Debian: apt-get install gcc libssl-dev); "
              "falling back to --engine python", file=sys.stderr)
        return None
    os.replace(tmp, BLAST_BIN)  # atomic: concurrent runs never execute a half-written binary
    print(f"loadgen: compiled {BLAST_BIN.relative_to(ROOT)}", file=sys.stderr)
    return BLAST_BIN


def run_c(blast: Path, packets: list[bytes], args, nsock: int, label: str, deadline_s: float | None) -> dict:
    """run() in the C engine: same parameters, same statistics (plus "engine": "c")."""
    with tempfile.NamedTemporaryFile(prefix="loadgen-", suffix=".pkts") as f:
        f.write(b"".join(struct.pack("<I", len(pkt)) + pkt for pkt in packets))
        f.flush()
        cmd = [str(blast), "--packets", f.name, "--target", args.target, "--source", args.source,
               "--sockets", str(nsock), "--window", str(args.window), "--timeout", repr(args.timeout),
               "--retries", str(args.retries), "--secret", args.secret, "--label", label, "--kind", args.kind]
        if args.rate:
            cmd += ["--rate", repr(args.rate)]
        if deadline_s:
            cmd += ["--duration", repr(deadline_s)]
        if args.no_verify:
            cmd.append("--no-verify")
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its stderr goes to ours
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        sys.exit(f"loadgen: the C engine failed (exit {out.returncode}): {' '.join(cmd)}")
    return json.loads(lines[-1])


def report(r: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(r))
        return
    print(f"[{r['label']}] {r['kind']} -> {r['target']}: sent {r['sent']}, answered {r['answered']} "
          f"in {r['seconds']:.2f} s = {r['answered_per_s']:.0f}/s"
          + (f" (offered {r['rate_offered']}/s)" if r["rate_offered"] else ""))
    print(f"    latency ms: p50 {r['p50_ms']}  p90 {r['p90_ms']}  p99 {r['p99_ms']}  max {r['max_ms']}")
    print(f"    replies {r['codes']}; timeouts->retransmits {r['retransmits']}, lost {r['lost']}, "
          f"bad authenticator {r['bad_authenticator']}; window {r['window']} over {r['sockets']} sockets")
    print(f"    loadgen ({r.get('engine', 'python')}) cpu {r['loadgen_cpu_s']} s = {r['loadgen_us_per_req']} us/request"
          + (f"; late sends {r['late_sends']}, p99 from schedule {r['sched_p99_ms']} ms" if r["rate_offered"] else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:18220", help="host:port (FreeRADIUS bench: 18220 auth, 18230 acct)")
    p.add_argument("--source", default="127.0.0.2", help="source address = the NAS (seed_scale: 127.0.0.2)")
    p.add_argument("--nas-ip", default="127.0.0.2", help="NAS-IP-Address attribute")
    p.add_argument("--secret", default="testing123")
    p.add_argument("--kind", choices=["pap", "mschapv2", "acct"], default="pap")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--first", type=int, default=1, help="number of the first user")
    p.add_argument("--offset", type=int, default=0, help="start at this user index (vary between runs)")
    p.add_argument("--prefix", default="user")
    p.add_argument("--password-prefix", default="pw")
    p.add_argument("--wrong-password", action="store_true", help="send wrong passwords (expect Access-Reject)")
    p.add_argument("--message-authenticator", action="store_true", help="add Message-Authenticator to Access-Requests")
    p.add_argument("--count", type=int, default=100_000, help="requests to build and send")
    p.add_argument("--duration", type=float, default=None, help="stop sending after this many seconds")
    p.add_argument("--rate", type=float, default=None, help="offer a fixed rate (requests/s) instead of as fast as possible")
    p.add_argument("--window", type=int, default=1024, help="requests in flight")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds before a retransmission")
    p.add_argument("--retries", type=int, default=2, help="retransmissions before a request counts as lost")
    p.add_argument("--storm", action="store_true", help="each of --users users authenticates once; report total time")
    p.add_argument("--sessions", type=int, default=20_000, help="acct: open sessions (Start sent first, untimed)")
    p.add_argument("--session-base", type=lambda v: int(v, 0), default=None,
                   help="acct: first Acct-Session-Id number (default: from the clock, so runs do not collide)")
    p.add_argument("--interim-interval", type=int, default=300)
    p.add_argument("--no-verify", action="store_true", help="do not check Response Authenticators")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.add_argument("--engine", choices=["c", "python"], default="c",
                   help="send/receive loop: c = bench/radius/blast.c (compiled on demand), python = in this process")
    args = p.parse_args()
    if args.storm and args.kind == "acct":
        p.error("--storm is for pap/mschapv2")
    blast = build_blast() if args.engine == "c" else None

    def send(packets: list[bytes], args, nsock: int, label: str, deadline_s: float | None) -> dict:
        if blast is not None:
            return run_c(blast, packets, args, nsock, label, deadline_s)
        return {**run(packets, args, nsock, label, deadline_s), "engine": "python"}
    if args.session_base is None:
        args.session_base = (int(time.time()) & 0xFFFF) << 16

    # sockets: at least twice the window in (port, id) slots, so a slot is reused
    # only after the previous request on it has long been answered
    nsock = max(2, -(-2 * args.window // 256))
    nslots = nsock * 256
    b = Builder(args, nslots, nsock)
    t = time.perf_counter()
    if args.kind == "acct":
        sessions = args.sessions
        starts = [b.acct(i, 1, i, 0) for i in range(sessions)]
        count = args.count
        interims = [b.acct(i, 3, i % sessions, 1 + i // sessions) for i in range(count)]
        print(f"built {len(starts)} Starts + {len(interims)} Interim-Updates in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        report(send(starts, args, nsock, "acct-start", None), args.json)
        report(send(interims, args, nsock, "acct-interim", args.duration), args.json)
        return
    count = args.users if args.storm else args.count
    packets = [b.auth(i) for i in range(count)]
    print(f"built {len(packets)} {args.kind} Access-Requests in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    r = send(packets, args, nsock, "storm" if args.storm else "auth", None if args.storm else args.duration)
    report(r, args.json)


if __name__ == "__main__":
    main()
