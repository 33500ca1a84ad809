from django.apps import AppConfig


class CardsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ispcore.cards"
    label = "cards"
    verbose_name = "Recharge cards"
