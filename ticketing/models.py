from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q


class Event(models.Model):
    """A general-admission event: `capacity` interchangeable tickets."""

    slug = models.SlugField(max_length=120, unique=True)
    name = models.CharField(max_length=200)
    venue = models.CharField(max_length=200, blank=True)
    starts_at = models.DateTimeField()
    on_sale_at = models.DateTimeField()
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.50"))])
    currency = models.CharField(max_length=3, default="USD")
    capacity = models.PositiveIntegerField()
    max_per_order = models.PositiveSmallIntegerField(default=4)
    # Staff switch: a closed sale admits nobody and takes no bookings.
    sale_closed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gte=0), name="event_capacity_nonnegative"),
            models.CheckConstraint(condition=Q(max_per_order__gte=1), name="event_max_per_order_positive"),
            models.CheckConstraint(condition=Q(price__gte=0), name="event_price_nonnegative"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="event_currency_iso4217"),
        ]

    def __str__(self) -> str:
        return self.name


class InventoryBucket(models.Model):
    """A slice of an event's tickets.

    Inventory is split over several rows so concurrent reservations do not all
    wait on one row lock. Each bucket keeps `available + held + sold ==
    capacity` by a database constraint; the event's totals are the sums.
    Tickets only move between buckets as `available` (with the capacity that
    comes with it), so a hold is always returned to the bucket it came from.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="buckets")
    index = models.PositiveSmallIntegerField()
    capacity = models.IntegerField()
    available = models.IntegerField()
    held = models.IntegerField(default=0)
    sold = models.IntegerField(default=0)

    class Meta:
        ordering = ["event", "index"]
        constraints = [
            models.UniqueConstraint(fields=["event", "index"], name="bucket_unique_index_per_event"),
            models.CheckConstraint(condition=Q(available__gte=0), name="bucket_available_nonnegative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="bucket_held_nonnegative"),
            models.CheckConstraint(condition=Q(sold__gte=0), name="bucket_sold_nonnegative"),
            models.CheckConstraint(
                condition=Q(capacity=F("available") + F("held") + F("sold")),
                name="bucket_counts_add_up_to_capacity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id}#{self.index}: {self.available} available, {self.held} held, {self.sold} sold"
