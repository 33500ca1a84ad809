"""ISP billing and RADIUS management: the project package and the core domain apps."""
from .celery import app as celery_app

__all__ = ("celery_app",)
