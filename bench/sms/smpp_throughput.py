"""Throughput of notifications.smpp.SMPPClient against the SMSC simulator.

Submits N messages (default 5,000 single-part) over one transceiver bind with
a window, waits for every submit_sm_resp, and prints parts/s. ``--dlr`` makes
the simulator send a delivery receipt for every part on the same connection.

    .venv/bin/python bench/sms/smpp_throughput.py [--count 5000] [--window 10] [--dlr]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from notifications.smpp import Outcome, SMPPClient, SMPPConfig
from tests.peers.smsc import SMSCSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="messages to submit")
    parser.add_argument("--window", type=int, default=10, help="outstanding submit_sm per bind")
    parser.add_argument("--dlr", action="store_true", help="a delivery receipt for every part")
    parser.add_argument("--text", default="Payment of 500 Tk received. New balance 1,250 Tk. Thank you!")
    args = parser.parse_args()

    receipts = 0
    receipts_lock = threading.Lock()
    all_receipts = threading.Event()

    def on_receipt(_receipt: object) -> None:
        nonlocal receipts
        with receipts_lock:
            receipts += 1
            if receipts >= args.count:
                all_receipts.set()

    with SMSCSimulator("bench", "bench") as sim:
        if args.dlr:
            sim.configure(dlr="late", dlr_delay=0.0)
        client = SMPPClient(SMPPConfig("127.0.0.1", sim.port, "bench", "bench", window=args.window),
                            on_receipt=on_receipt)
        client.start()
        started = time.perf_counter()
        futures = [f for i in range(args.count) for f in client.submit("8801711000000", "ISP", args.text, ref=i)]
        parts = [f.result(timeout=60) for f in futures]
        elapsed = time.perf_counter() - started
        if args.dlr:
            all_receipts.wait(60)
        client.stop()
    accepted = sum(1 for p in parts if p.outcome is Outcome.ACCEPTED)
    print(f"{len(parts)} parts, {accepted} accepted, window {args.window}, receipts {'on' if args.dlr else 'off'}")
    print(f"{len(parts) / elapsed:,.0f} parts/s ({elapsed:.2f} s); max outstanding seen by the SMSC: {sim.max_outstanding}")


if __name__ == "__main__":
    main()
