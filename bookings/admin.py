from django.contrib import admin, messages

from bookings import services
from bookings.models import Booking
from ticketing.errors import ServiceError


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
    actions = ["refund_and_return_tickets", "refund_and_keep_tickets"]

    @admin.action(description="Refund, and put the tickets back on sale")
    def refund_and_return_tickets(self, request, queryset):
        self._refund(request, queryset, return_tickets=True)

    @admin.action(description="Refund, and keep the tickets off sale")
    def refund_and_keep_tickets(self, request, queryset):
        self._refund(request, queryset, return_tickets=False)

    def _refund(self, request, queryset, *, return_tickets: bool):
        for booking in queryset:
            try:
                refunded = services.refund_booking(
                    booking_id=booking.pk, return_tickets=return_tickets, staff_email=request.user.email
                )
            except ServiceError as exc:
                self.message_user(request, f"Booking {booking.pk}: {exc.detail}", messages.ERROR)
                continue
            self.log_change(request, refunded, refunded.refund_note)
            self.message_user(request, f"Booking {booking.pk}: {refunded.refund_note}.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
