from django.contrib import admin

from payments.models import StripeEvent


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "payment_intent_id", "outcome", "received_at")
    list_filter = ("type",)
    search_fields = ("id", "payment_intent_id")
    readonly_fields = ("id", "type", "payment_intent_id", "outcome", "received_at", "payload")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
