"""Throughput of notifications.providers.http.HttpProvider against the local bulk-SMS HTTP simulator.

N messages (default 5,000) are submitted from T caller threads (default 8;
each keeps its own keep-alive connection) through one provider with the
``bd_bulk`` profile and a window of W requests in flight; prints parts/s.
``--parts 2`` sends two-part messages (one request per message, two parts
reported); ``--split part`` sends one request per part instead; ``--dlr``
makes the simulator push a delivery report webhook for every message to a
local receiver that parses it with ``handle_callback``. The simulator runs in
its own process (as a real provider would, and so it does not share the
benchmark's GIL); ``--same-process`` keeps it in this one.

    .venv/bin/python bench/sms/http_throughput.py [--count 5000] [--threads 8] [--window 8] [--parts 1] [--dlr]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from notifications.encoding import segment
from notifications.providers.http import HttpProvider
from notifications.smpp import Outcome
from tests.peers.sms_http import HttpSmsSimulator, WebhookReceiver


def serve(conn, dlr: bool, callback_url: str | None) -> None:
    """Run the simulator in a child process until told to stop; report (port) then (requests, messages)."""
    with HttpSmsSimulator("bench-token", balance="100000000", callback_url=callback_url) as sim:
        if dlr:
            sim.configure(dlr="late", dlr_delay=0.0)
        conn.send(sim.port)
        conn.recv()
        conn.send((len(sim.requests), len(sim.messages)))


@contextlib.contextmanager
def simulator(same_process: bool, dlr: bool, callback_url: str | None):
    """Yields (base_url, stats) where stats() gives (requests, messages) seen by the simulator."""
    if same_process:
        with HttpSmsSimulator("bench-token", balance="100000000", callback_url=callback_url) as sim:
            if dlr:
                sim.configure(dlr="late", dlr_delay=0.0)
            yield sim.base_url, lambda: (len(sim.requests), len(sim.messages))
        return
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=serve, args=(child, dlr, callback_url), daemon=True)
    process.start()
    port = parent.recv()
    done: list = []

    def stats():
        if not done:
            parent.send("stop")
            done.append(parent.recv())
        return done[0]

    try:
        yield f"http://127.0.0.1:{port}", stats
    finally:
        stats()
        process.join(10)


SHORT = "Payment of 500 Tk received. New balance 1,250 Tk. Thank you!"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="messages to submit")
    parser.add_argument("--threads", type=int, default=8, help="caller threads")
    parser.add_argument("--window", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--parts", type=int, default=1, choices=(1, 2, 3), help="parts per message")
    parser.add_argument("--split", choices=("message", "part"), default="message")
    parser.add_argument("--dlr", action="store_true", help="a delivery report webhook for every message")
    parser.add_argument("--same-process", action="store_true", help="run the simulator in this process")
    args = parser.parse_args()
    text = SHORT if args.parts == 1 else (SHORT + " ") * (args.parts * 2 + 1)
    text = text[: {1: 160, 2: 300, 3: 450}[args.parts]]
    assert segment(text).count == args.parts

    receipts = 0
    lock = threading.Lock()

    def on_receipt(_name: str, _receipt: object) -> None:
        nonlocal receipts
        with lock:
            receipts += 1

    receiver = WebhookReceiver(lambda data: provider.handle_callback(data))
    with receiver, simulator(args.same_process, args.dlr, receiver.url if args.dlr else None) as (base_url, stats):
        provider = HttpProvider("bench", {"profile": "bd_bulk", "base_url": base_url, "split": args.split,
                                          "credentials": {"api_token": "bench-token"}, "window": args.window},
                                on_receipt=on_receipt)
        results: list = []

        def worker(start: int) -> None:
            mine = []
            for i in range(start, args.count, args.threads):
                mine += [f.result() for f in provider.submit("8801711000000", "ISP", text, ref=f"b{i}")]
            with lock:
                results.extend(mine)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
        started = time.perf_counter()
        cpu_started = time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if args.dlr:
            deadline = time.monotonic() + 60
            while receipts < args.count and time.monotonic() < deadline:
                time.sleep(0.05)
        provider.stop()
        requests, messages = stats()
    accepted = sum(1 for r in results if r.outcome is Outcome.ACCEPTED)
    print(f"{args.count} messages, {len(results)} parts, {accepted} accepted, {requests} HTTP requests "
          f"({messages} messages sent by the simulator, in {'this' if args.same_process else 'its own'} process), "
          f"{args.threads} threads, window {args.window}, split {args.split}, "
          f"receipts {receipts if args.dlr else 'off'}; max in flight {provider.max_in_flight}")
    print(f"{len(results) / elapsed:,.0f} parts/s, {requests / elapsed:,.0f} requests/s ({elapsed:.2f} s)")
    who = "client and simulator" if args.same_process else "client side only"
    print(f"CPU of this process ({who}): {cpu:.2f} s = {cpu / requests * 1e6:,.0f} us per request, "
          f"i.e. {requests / cpu:,.0f} requests per CPU-second (a figure the machine's load does not change much)")


if __name__ == "__main__":
    main()
