"""Entry point of a spawned RADIUS worker process.

Kept free of Django imports at module level: a spawned process unpickles its
target before Django is set up."""

from __future__ import annotations


def main(options: dict) -> None:
    import django

    django.setup()
    from radius.runner import Worker, WorkerOptions

    Worker(WorkerOptions(**options)).run()
