from django.contrib import admin

from bookings.models import Booking


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event",
        "fan",
        "quantity",
        "amount",
        "currency",
        "status",
        "late_payment",
        "needs_refund",
        "created_at",
        "expires_at",
    )
    list_filter = ("status", "late_payment", "needs_refund", "event")
    search_fields = ("fan__email", "payment_intent_id", "refund_id")
    readonly_fields = [f.name for f in Booking._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
