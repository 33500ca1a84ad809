from django.apps import AppConfig


class IpamConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ipam"
    verbose_name = "IP address management"

    def ready(self) -> None:
        # Infrastructure, not domain flow: SQLite (first run) learns the network
        # operators PostgreSQL has natively, so the same queries work on both.
        from django.db.backends.signals import connection_created

        from .fields import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="ipam_sqlite_functions")
