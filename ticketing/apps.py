from django.apps import AppConfig


class TicketingConfig(AppConfig):
    name = "ticketing"
    default_auto_field = "django.db.models.BigAutoField"
