"""Creating events and moving their inventory."""

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from ticketing.models import Event, InventoryBucket
from waitlist.services import create_waiting_room


def split_capacity(*, capacity: int, buckets: int) -> list[int]:
    """Spread `capacity` over at most `buckets` rows, as evenly as possible."""
    count = max(1, min(buckets, capacity))
    base, extra = divmod(capacity, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def create_event(
    *,
    name: str,
    capacity: int,
    price: Decimal,
    starts_at: datetime,
    on_sale_at: datetime,
    currency: str = "USD",
    max_per_order: int = 4,
    venue: str = "",
    slug: str = "",
) -> Event:
    """Create an event with its inventory buckets and waiting room, atomically."""
    with transaction.atomic():
        event = Event.objects.create(
            slug=slug or _unique_slug(name),
            name=name,
            venue=venue,
            starts_at=starts_at,
            on_sale_at=on_sale_at,
            price=price,
            currency=currency.upper(),
            capacity=capacity,
            max_per_order=max_per_order,
        )
        provision_event(event=event)
    return event


def provision_event(*, event: Event) -> None:
    """Give a newly saved event its inventory buckets and waiting room.

    Call in the transaction that created the event (create_event, admin)."""
    create_inventory(event=event)
    create_waiting_room(event=event)


def create_inventory(*, event: Event) -> None:
    """Create the buckets for a new event's capacity (all available)."""
    InventoryBucket.objects.bulk_create(
        InventoryBucket(event=event, index=i, capacity=n, available=n)
        for i, n in enumerate(split_capacity(capacity=event.capacity, buckets=settings.INVENTORY_BUCKETS))
    )


@transaction.atomic
def add_tickets(*, event: Event, count: int) -> None:
    """Staff: put `count` more tickets on sale (into the emptiest bucket's row).

    Locks the event row so two staff edits cannot lose an update; the bucket
    constraint keeps the counts adding up.
    """
    from django.db.models import F

    if count <= 0:
        raise ValueError("count must be positive")
    Event.objects.select_for_update().get(pk=event.pk)
    bucket = InventoryBucket.objects.filter(event=event).order_by("available", "index").first()
    InventoryBucket.objects.filter(pk=bucket.pk).update(
        capacity=F("capacity") + count, available=F("available") + count
    )
    Event.objects.filter(pk=event.pk).update(capacity=F("capacity") + count)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:100] or "event"
    slug, n = base, 1
    while Event.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug
