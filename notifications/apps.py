from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from ispcore.core import audit

        from .transactional import kick_outbox

        if kick_outbox not in audit.OUTBOX_LISTENERS:
            audit.OUTBOX_LISTENERS.append(kick_outbox)
