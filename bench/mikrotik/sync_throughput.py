"""How fast the diff sync talks to a router: first sync (all adds), a no-op re-sync (prints
only), and repairing drift on 1% of the items, against the RouterOS API simulator over TCP.

Measures the diff engine plus the wire protocol (librouteros, one command in flight), not
the database: the desired state is synthetic (N PPP secrets, N expired-list entries, N
simple queues), so no Django database is needed.

    /work/main/.venv/bin/python bench/mikrotik/sync_throughput.py --items 2000

A real router answers slower than the in-process simulator (RouterOS on a CCR applies a
few hundred to a few thousand API commands per second), so read these figures as the
ceiling of our side.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")

from mikrotik.client import connect
from mikrotik.sync import ADDRESS_LIST, PPP_SECRET, SIMPLE_QUEUE, SyncResult, sync_once
from tests.peers.routeros import RouterOSSimulator


def desired(n: int) -> dict[str, list[dict[str, str]]]:
    return {
        PPP_SECRET: [{"name": f"user{i:06d}", "comment": f"isp: customer {i}", "password": f"pw-{i}",
                      "service": "pppoe", "profile": "default", "remote-address": "", "disabled": "false"}
                     for i in range(n)],
        ADDRESS_LIST: [{"list": "expired", "address": f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}",
                        "comment": f"isp: user{i:06d}", "disabled": "false"} for i in range(n)],
        SIMPLE_QUEUE: [{"name": f"cust-{i}", "comment": f"isp: user{i:06d}",
                        "target": f"100.{80 + i // 65536}.{i // 256 % 256}.{i % 256}/32",
                        "max-limit": "5000000/10000000", "burst-limit": "0/0", "burst-threshold": "0/0",
                        "burst-time": "0s/0s", "priority": "8/8", "disabled": "false"} for i in range(n)],
    }


def timed_sync(port: int, state) -> tuple[float, SyncResult]:
    result = SyncResult(nas_id=0, dry_run=False)
    start = time.perf_counter()
    with connect("127.0.0.1", port, "bench", "bench", timeout=30) as conn:
        sync_once(conn, state, result)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="items per menu (3 menus)")
    args = parser.parse_args()
    state = desired(args.items)
    total = sum(len(v) for v in state.values())
    with RouterOSSimulator(username="bench", password="bench") as router:
        seconds, result = timed_sync(router.port, state)
        print(f"first sync:   {total} adds in {seconds:.2f}s = {result.added / seconds:,.0f} commands/s")
        seconds, result = timed_sync(router.port, state)
        assert result.in_sync, result.counts()
        print(f"no-op resync: {total} items compared in {seconds:.3f}s (3 prints)")
        drifted = max(1, args.items // 100)
        # drift: 1% of the queues get a hand-edited limit, and 1% more managed queues appear
        # that the system no longer wants
        with connect("127.0.0.1", router.port, "bench", "bench", timeout=30) as conn:
            for item in conn.print(SIMPLE_QUEUE)[:drifted]:
                conn.set(SIMPLE_QUEUE, item[".id"], **{"max-limit": "1000/1000"})
        router.seed(SIMPLE_QUEUE, *({"name": f"stale-{i}", "comment": "isp: gone", "target": f"10.9.{i // 256}."
                                     f"{i % 256}/32"} for i in range(drifted)))
        seconds, result = timed_sync(router.port, state)
        print(f"repair drift: {result.updated} sets, {result.removed} removes among {total} items in "
              f"{seconds:.3f}s")


if __name__ == "__main__":
    main()
