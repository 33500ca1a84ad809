"""RADIUS load generator: PAP Access-Requests or accounting, a window of
requests in flight, prints requests/s and latency percentiles.

Against a tenant made by `manage.py seed_scale --customers N` (users
user000001.., passwords pw000001.., NAS 127.0.0.2 secret testing123):

    .venv/bin/python manage.py radiusd --workers 1 --auth-port 18120 --acct-port 18130 &
    .venv/bin/python bench/radius/loadgen.py auth --port 18120 --users 100000 --requests 100000
    .venv/bin/python bench/radius/loadgen.py acct --port 18130 --users 100000 --requests 60000

Packets are built before the clock starts (each with its own authenticator,
so none is answered from the duplicate cache). No Django needed.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from radius.testing import access_request, accounting_request


def build_auth(n: int, users: int, secret: bytes, ma: bool, offset: int) -> list[bytes]:
    ppp = [("Service-Type", 2), ("Framed-Protocol", 1), ("NAS-Port-Type", 15)]
    hotspot = [("Service-Type", 1), ("NAS-Port-Type", 19)]
    packets = []
    for i in range(n):
        u = (offset + i) % users + 1
        # seed_scale's mix: user number % 10 in (7, 8) is a hotspot customer, the rest use PPPoE
        extra = hotspot if u % 10 in (7, 8) else ppp
        raw, _ = access_request(f"user{u:06d}", secret, password=f"pw{u:06d}", ident=i % 256, extra=extra,
                                message_authenticator=ma)
        packets.append(raw)
    return packets


def build_acct(n: int, users: int, secret: bytes, offset: int) -> list[bytes]:
    packets = []
    per = 3
    for i in range(0, n, per):
        u = (offset + i // per) % users + 1
        sid = f"{offset + i:08x}"
        name = f"user{u:06d}"
        packets.append(accounting_request(secret, "start", username=name, session_id=sid, ident=i % 256))
        packets.append(accounting_request(secret, "interim", username=name, session_id=sid, ident=(i + 1) % 256,
                                          input_octets=10**6, output_octets=5 * 10**6, session_time=300))
        packets.append(accounting_request(secret, "stop", username=name, session_id=sid, ident=(i + 2) % 256,
                                          input_octets=2 * 10**6, output_octets=9 * 10**6, session_time=600))
    return packets[:n]


def run(packets: list[bytes], host: str, port: int, source: str, window: int, timeout: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind((source, 0))
    sock.settimeout(timeout)
    address = (host, port)
    sent_at: dict[tuple[int, bytes], float] = {}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lost = 0
    it = iter(packets)
    pending = 0
    done = False
    # accounting packets of one session must arrive in order: the window covers different sessions
    start = time.perf_counter()
    while True:
        while not done and pending < window:
            try:
                raw = next(it)
            except StopIteration:
                done = True
                break
            sent_at[(raw[1], raw[4:20])] = time.perf_counter()
            sock.sendto(raw, address)
            pending += 1
        if pending == 0:
            break
        try:
            data = sock.recv(4096)
        except TimeoutError:
            lost += pending
            sent_at.clear()
            pending = 0
            continue
        now = time.perf_counter()
        # match the reply to its request by identifier; authenticators differ so use the oldest with that id
        for key in sent_at:
            if key[0] == data[1]:
                latencies.append(now - sent_at.pop(key))
                break
        codes[data[0]] = codes.get(data[0], 0) + 1
        pending -= 1
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(packets), "answered": len(latencies), "lost": lost, "seconds": elapsed,
            "rate": len(latencies) / elapsed, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["auth", "acct"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2", help="source address = the NAS (seed_scale: 127.0.0.2)")
    parser.add_argument("--secret", default="testing123")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=64, help="requests in flight (acct: keep below 256)")
    parser.add_argument("--offset", type=int, default=0, help="first user/session index (vary between runs)")
    parser.add_argument("--message-authenticator", action="store_true")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    secret = args.secret.encode()
    t0 = time.perf_counter()
    if args.mode == "auth":
        packets = build_auth(args.requests, args.users, secret, args.message_authenticator, args.offset)
    else:
        packets = build_acct(args.requests, args.users, secret, args.offset)
    print(f"built {len(packets)} packets in {time.perf_counter() - t0:.1f} s")
    result = run(packets, args.host, args.port, args.source, args.window, args.timeout)
    print(f"{args.mode}: {result['answered']}/{result['requests']} answered in {result['seconds']:.2f} s = "
          f"{result['rate']:.0f}/s; p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms; "
          f"lost {result['lost']}; reply codes {result['codes']}")


if __name__ == "__main__":
    main()
