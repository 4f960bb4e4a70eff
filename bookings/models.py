from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q


class Booking(models.Model):
    """A fan's hold on tickets, and what became of it.

    processing -> succeeded | failed | expired | cancelled; succeeded -> refunded.
    A payment that lands after the hold ended (late payment) moves a failed or
    expired booking to succeeded when the pool still has the tickets, or to
    refunded when it does not. Every transition is a conditional UPDATE from
    the expected state (see bookings.services), so replays are harmless.
    """

    class Status(models.TextChoices):
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        EXPIRED = "expired"
        CANCELLED = "cancelled"
        REFUNDED = "refunded"

    # Statuses in which the booking's tickets count as held or sold.
    HOLDING = (Status.PROCESSING,)

    event = models.ForeignKey("ticketing.Event", on_delete=models.PROTECT, related_name="bookings")
    fan = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings")
    # The inventory row the tickets were taken from and go back to. Not
    # indexed: bookings are never looked up by bucket, and every index here
    # is written on the reservation hot path.
    bucket = models.ForeignKey("ticketing.InventoryBucket", on_delete=models.PROTECT, related_name="+", db_index=False)
    # One booking per admission. Cleared when the hold is released before
    # the fan ever saw the booking (payment provider down), so the token can
    # be used again.
    access_token = models.OneToOneField(
        "waitlist.AccessToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="booking"
    )
    quantity = models.PositiveSmallIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Indexed with expires_at (booking_status_expiry), which also serves
    # lookups by status alone.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    # Whether the booking's tickets are currently counted as held or sold in
    # its bucket. Moves in the same UPDATE as the counters, so tickets are
    # returned exactly once whichever path (webhook, task, sweeper) gets there.
    holds_tickets = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True)
    # Stripe
    payment_intent_id = models.CharField(max_length=255, blank=True)
    client_secret = models.CharField(max_length=255, blank=True)
    # Intents replaced after a declined card (see restart_payment): events
    # about them still find this booking.
    previous_payment_intents = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    payment_attempts = models.PositiveSmallIntegerField(default=1)
    refund_id = models.CharField(max_length=255, blank=True)
    # Money arrived after the hold had ended.
    late_payment = models.BooleanField(default=False)
    # A late payment whose tickets were gone: refund owed. The claim time is
    # set just before calling Stripe so two workers never refund twice.
    needs_refund = models.BooleanField(default=False)
    refund_claimed_at = models.DateTimeField(null=True, blank=True)
    # Who refunded and what became of the tickets, for the record.
    refund_note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="booking_quantity_positive"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="booking_amount_nonnegative"),
            # A processing booking always holds its tickets; a failed, expired
            # or cancelled one never does.
            models.CheckConstraint(
                condition=~Q(status="processing") | Q(holds_tickets=True), name="booking_processing_holds"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["failed", "expired", "cancelled"]) | Q(holds_tickets=False),
                name="booking_ended_holds_nothing",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="booking_status_expiry"),
            # Partial indexes: a new hold has no intent yet and no earlier
            # ones, so reserving writes neither index.
            models.Index(
                fields=["payment_intent_id"], name="booking_payment_intent", condition=~Q(payment_intent_id="")
            ),
            GinIndex(
                fields=["previous_payment_intents"],
                name="booking_previous_intents",
                condition=Q(payment_attempts__gt=1),
            ),
        ]

    def __str__(self) -> str:
        return f"booking {self.id} ({self.status})"
