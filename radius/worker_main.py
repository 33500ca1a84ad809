"""Entry point of a spawned RADIUS worker process.

Kept free of Django imports at module level: a spawned process unpickles its
target before Django is set up."""

from __future__ import annotations

import os
import signal
import sys


def _stop_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when the supervising radiusd dies, even
    by SIGKILL: an orphaned worker would go on answering on the shared ports (and
    holding its database connections) with nobody to stop or restart it. The
    worker's SIGTERM handler flushes its accounting queue and exits."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    supervisor = multiprocessing.parent_process()
    parent = supervisor.pid if supervisor is not None else os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(options: dict) -> None:
    _stop_with_parent()
    import django

    django.setup()
    from radius.runner import Worker, WorkerOptions

    Worker(WorkerOptions(**options)).run()
