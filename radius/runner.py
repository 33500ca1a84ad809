"""Run RADIUS workers: one process per worker sharing the ports (SO_REUSEPORT),
or one worker in a background thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, connections

from .accounting import AccountingWriter
from .authlog import AuthLogWriter, PipedAuthLogWriter, conninfo_from_django
from .authlog_copier import find_libpq
from .metrics import Metrics, StatsFileWriter, serve_metrics, watch_gc
from .server import RadiusServer
from .snapshot import Snapshot, publish_usage
from .worker_main import main as worker_main

logger = logging.getLogger(__name__)


def setting(name: str, default):
    return getattr(settings, name, default)


def var_dir() -> Path:
    default = Path(getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var")) / "radius"
    return Path(setting("RADIUS_VAR_DIR", default))


@dataclass
class WorkerOptions:
    host: str = "0.0.0.0"
    auth_port: int = 1812
    acct_port: int = 1813
    index: int = 0
    reject_delay: float = 1.0
    dedup_ttl: float = 10.0
    auth_log: str = "all"
    batch_max: int = 1000
    acct_writers: int = 2
    #: write the auth log from a copier process (radiusd on PostgreSQL) instead of a thread
    auth_log_process: bool = False
    state_dir: Path = field(default_factory=var_dir)
    reuse_port: bool = True

    @classmethod
    def from_settings(cls, **overrides) -> WorkerOptions:
        values = {
            "host": setting("RADIUS_BIND", "0.0.0.0"),
            "auth_port": setting("RADIUS_AUTH_PORT", 1812),
            "acct_port": setting("RADIUS_ACCT_PORT", 1813),
            "reject_delay": setting("RADIUS_REJECT_DELAY", 1.0),
            "dedup_ttl": setting("RADIUS_DEDUP_TTL", 10.0),
            "auth_log": setting("RADIUS_AUTH_LOG", "all"),
            "batch_max": setting("RADIUS_BATCH_MAX", 1000),
            "acct_writers": setting("RADIUS_ACCT_WRITERS", 2),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Worker:
    """Snapshot + writer + server of one worker; :meth:`run` blocks in its own loop."""

    def __init__(self, options: WorkerOptions, *, sync: bool = True) -> None:
        self.options = options
        self.metrics = Metrics()
        self.snapshot = Snapshot()
        state = Path(options.state_dir)
        self.writer = AccountingWriter(
            spool_path=state / f"spool-{options.index}.jsonl",
            on_commit=self._on_commit,
            batch_max=options.batch_max,
            metrics=self.metrics,
            # SQLite (the first run) has one writer at a time anyway: a second thread would
            # only wait for its lock
            writers=options.acct_writers if connection.vendor == "postgresql" else 1,
        )
        log_options = {"max_buffer": setting("RADIUS_AUTH_LOG_BUFFER", 50_000), "metrics": self.metrics,
                       "interval": setting("RADIUS_AUTH_LOG_INTERVAL", 0.05)}
        piped = options.auth_log_process and options.auth_log != "none" and connection.vendor == "postgresql"
        if piped and find_libpq() is None:
            logger.warning("no libpq for the auth-log copier process: writing the auth log from a thread")
            piped = False
        self.auth_log = (PipedAuthLogWriter(conninfo=conninfo_from_django(), **log_options) if piped
                         else AuthLogWriter(**log_options))
        self.stats = StatsFileWriter(self.metrics, state / "stats" / f"worker-{options.index}.json")
        self.server = RadiusServer(
            self.snapshot, self.writer, self.metrics, reject_delay=options.reject_delay,
            dedup_ttl=options.dedup_ttl, auth_log=options.auth_log, dedup_max=setting("RADIUS_DEDUP_MAX", 200_000),
            auth_log_writer=self.auth_log if options.auth_log != "none" else None,
        )
        self.sync = sync
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self._stopped: asyncio.Event | None = None

    def _on_commit(self, customer_ids: set[int], open_counts: dict[int, int] | None = None) -> None:
        changed = self.snapshot.refresh_usage(sorted(customer_ids), open_counts)
        # other workers need to hear only of what changed in a snapshot: open-session
        # counts and quota usage, not every Interim-Update of a customer without a quota
        publish_usage(changed)

    def prepare(self) -> None:
        if self.sync:
            self.snapshot.start_sync()
            self.snapshot.subscribed.wait(2)  # subscribe before the first load
        while True:
            try:
                self.snapshot.load_all()
                break
            except Exception:
                # Without a first snapshot there is nothing to answer from.
                logger.exception("cannot load the RADIUS snapshot; retrying in 2 s")
                time.sleep(2)
        if self.snapshot.freeze_gc:
            # start serving with no garbage and everything loaded so far (Django,
            # the snapshot) outside the collector's reach (see Snapshot._loading)
            gc.collect()
            gc.freeze()
        self.writer.start()
        self.auth_log.start()
        self.stats.start()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        opts = self.options
        await self.server.start(opts.host, opts.auth_port, opts.acct_port, opts.reuse_port)
        logger.info("RADIUS worker %d listening on %s auth %d acct %d", opts.index, opts.host,
                    self.server.ports["auth"], self.server.ports["acct"])
        self.ready.set()
        await self._stopped.wait()
        # answer what is queued before the loop goes away: flush, then let the replies out
        await self.loop.run_in_executor(None, self.writer.stop)
        await self.loop.run_in_executor(None, self.auth_log.stop)
        await asyncio.sleep(0.05)
        self.server.close()

    def request_stop(self) -> None:
        if self.loop is not None and self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)

    def shutdown(self) -> None:
        self.writer.stop()
        self.auth_log.stop()
        self.snapshot.stop_sync()
        self.stats.stop()
        connections.close_all()

    def run(self) -> None:
        # The writer threads (accounting, auth log, snapshot) run Python too; a thread
        # waiting for the GIL gets it after this interval (CPython's default: 5 ms), so
        # the event loop thread is never held up longer than this by them.
        sys.setswitchinterval(setting("RADIUS_GIL_SWITCH_INTERVAL", 0.0005))
        watch_gc(self.metrics)
        self.snapshot.freeze_gc = setting("RADIUS_GC_FREEZE", True)
        self.prepare()
        loop = asyncio.new_event_loop()
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.request_stop)
            loop.run_until_complete(self.serve())
        finally:
            loop.close()
            self.shutdown()


class ThreadedServer:
    """One worker in a background thread, for tests and benchmarks."""

    def __init__(self, **overrides) -> None:
        overrides.setdefault("host", "127.0.0.1")
        overrides.setdefault("auth_port", 0)
        overrides.setdefault("acct_port", 0)
        overrides.setdefault("reuse_port", False)
        sync = overrides.pop("sync", True)
        self.worker = Worker(WorkerOptions.from_settings(**overrides), sync=sync)
        self.thread: threading.Thread | None = None

    @property
    def auth_port(self) -> int:
        return self.worker.server.ports["auth"]

    @property
    def acct_port(self) -> int:
        return self.worker.server.ports["acct"]

    def start(self) -> ThreadedServer:
        self.worker.prepare()

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.worker.serve())
            finally:
                loop.close()

        self.thread = threading.Thread(target=run, name="radius-server", daemon=True)
        self.thread.start()
        if not self.worker.ready.wait(10):
            raise RuntimeError("RADIUS server did not start")
        return self

    def stop(self) -> None:
        self.worker.request_stop()
        if self.thread is not None:
            self.thread.join(5)
        self.worker.shutdown()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_workers(options: WorkerOptions, workers: int, metrics_port: int | None) -> int:
    """Start ``workers`` processes on the same ports and supervise them.

    A worker that dies is restarted; SIGTERM/SIGINT stops them all (each
    flushes its accounting queue first)."""
    if options.auth_port == 0:
        options.auth_port = _free_port(options.host)
    if options.acct_port == 0:
        options.acct_port = _free_port(options.host)
    stats_dir = Path(options.state_dir) / "stats"
    stats_dir.mkdir(parents=True, exist_ok=True)
    for old in stats_dir.glob("worker-*.json"):
        old.unlink(missing_ok=True)
    if metrics_port:
        serve_metrics(stats_dir, setting("RADIUS_METRICS_BIND", "127.0.0.1"), metrics_port)
    connections.close_all()
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, multiprocessing.Process] = {}
    stopping = threading.Event()

    def spawn(index: int) -> None:
        opts = {**options.__dict__, "index": index}
        proc = ctx.Process(target=worker_main, args=(opts,), name=f"radiusd-worker-{index}")
        proc.start()
        procs[index] = proc

    def stop(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(workers):
        spawn(i)
    logger.info("radiusd: %d workers on %s auth %d acct %d (pid %d)", workers, options.host, options.auth_port,
                options.acct_port, os.getpid())
    while not stopping.wait(1.0):
        for index, proc in list(procs.items()):
            if not proc.is_alive():
                logger.error("RADIUS worker %d exited with %s; restarting", index, proc.exitcode)
                spawn(index)
    for proc in procs.values():
        if proc.is_alive() and proc.pid:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs.values():
        proc.join(15)
    return 0
