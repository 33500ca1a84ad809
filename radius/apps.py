from django.apps import AppConfig


class RadiusConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "radius"

    def ready(self) -> None:
        from . import signals

        signals.connect()
