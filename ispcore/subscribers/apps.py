from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ispcore.subscribers"
    label = "subscribers"
