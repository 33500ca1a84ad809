"""Server counters: each worker keeps its own in memory and writes them to a
small JSON file every second (``<stats dir>/worker-<n>.json``); the
Prometheus endpoint and ``radiusd --stats`` add the files up. No shared
memory and no Redis needed, and a dead worker's last figures stay visible
until it is restarted."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from bisect import bisect_left
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: Upper bounds (seconds) of the latency histogram buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters (flat names, labelled ones as ``name{label}``) and histograms."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.histograms: dict[str, list] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def observe(self, name: str, seconds: float) -> None:
        hist = self.histograms.get(name)
        if hist is None:
            hist = self.histograms[name] = [[0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0]
        # first bucket whose bound is >= seconds (the last one: above every bound)
        hist[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[1] += seconds
        hist[2] += 1

    def as_dict(self) -> dict:
        return {"counters": dict(self.counters), "histograms": {k: [list(v[0]), v[1], v[2]] for k, v in self.histograms.items()},
                "pid": os.getpid(), "time": time.time()}


def watch_gc(metrics: Metrics):
    """Time every garbage collection of this process into ``gc_pause_seconds{genN}``:
    a collection stops every thread, so a long one is a latency spike for every
    request waiting meanwhile. Returns the callback (to remove from ``gc.callbacks``)."""
    started = [0.0]
    perf = time.perf_counter

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = perf()
        else:
            metrics.observe(f"gc_pause_seconds{{gen{info['generation']}}}", perf() - started[0])

    gc.callbacks.append(callback)
    return callback


class StatsFileWriter:
    """Dump a worker's metrics to its file every ``interval`` seconds."""

    def __init__(self, metrics: Metrics, path: Path, interval: float = 1.0) -> None:
        self.metrics = metrics
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="radius-stats", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.dump()

    def dump(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.metrics.as_dict()))
        tmp.replace(self.path)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.dump()
            except OSError:
                pass


def collect(stats_dir: Path) -> dict:
    """Sum every worker file in ``stats_dir``."""
    counters: dict[str, int] = {}
    histograms: dict[str, list] = {}
    workers = 0
    for path in sorted(Path(stats_dir).glob("worker-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        workers += 1
        for name, value in data.get("counters", {}).items():
            counters[name] = counters.get(name, 0) + value
        for name, (buckets, total, count) in data.get("histograms", {}).items():
            hist = histograms.setdefault(name, [[0] * len(buckets), 0.0, 0])
            hist[0] = [a + b for a, b in zip(hist[0], buckets, strict=False)]
            hist[1] += total
            hist[2] += count
    return {"workers": workers, "counters": counters, "histograms": histograms}


def _split(name: str) -> tuple[str, str]:
    if "{" in name and name.endswith("}"):
        base, label = name[:-1].split("{", 1)
        key = {"rejects": "reason", "drops": "cause", "gc_pause_seconds": "generation"}.get(base, "kind")
        return base, f'{{{key}="{label}"}}'
    return name, ""


def prometheus_text(data: dict) -> str:
    lines = [f"radius_workers {data['workers']}"]
    seen: set[str] = set()
    for name in sorted(data["counters"]):
        base, labels = _split(name)
        metric = f"radius_{base}_total"
        if metric not in seen:
            lines.append(f"# TYPE {metric} counter")
            seen.add(metric)
        lines.append(f"{metric}{labels} {data['counters'][name]}")
    for name, (buckets, total, count) in sorted(data["histograms"].items()):
        base, labels = _split(name)
        metric = f"radius_{base}"
        if metric not in seen:
            lines.append(f"# TYPE {metric} histogram")
            seen.add(metric)
        label = labels[1:-1] + "," if labels else ""
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, buckets, strict=False):
            cumulative += n
            lines.append(f'{metric}_bucket{{{label}le="{bound}"}} {cumulative}')
        lines.append(f'{metric}_bucket{{{label}le="+Inf"}} {count}')
        lines.append(f"{metric}_sum{labels} {total}")
        lines.append(f"{metric}_count{labels} {count}")
    return "\n".join(lines) + "\n"


def serve_metrics(stats_dir: Path, host: str, port: int) -> ThreadingHTTPServer:
    """Start the /metrics HTTP server in a daemon thread and return it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = prometheus_text(collect(stats_dir)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="radius-metrics", daemon=True).start()
    return server
