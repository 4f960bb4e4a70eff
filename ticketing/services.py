"""Creating events and moving their inventory."""

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils.text import slugify

from ticketing.errors import Conflict
from ticketing.models import Event, InventoryBucket
from waitlist import broadcast
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


def change_tickets(*, event_id: int, by: int) -> None:
    """Staff: put `by` more tickets on sale, or withdraw `-by` unsold available ones.

    Held and sold tickets never move. Locks the event row (no key update:
    bookings being inserted meanwhile only need a key share on it, so they
    neither wait nor deadlock), then the buckets in index order as a
    consolidation does. Raises Conflict, changing nothing, when fewer than
    `-by` tickets are available. The change is spread to even out what the
    buckets have available (level_change). A deferred database trigger
    refuses any commit where the event's capacity is not the sum of its
    buckets'.
    """
    if by == 0:
        return
    # Not durable: the admin calls this inside the change form's transaction.
    with transaction.atomic():
        Event.objects.select_for_update(no_key=True).only("pk").get(pk=event_id)
        buckets = list(InventoryBucket.objects.select_for_update().filter(event_id=event_id).order_by("index"))
        available = [b.available for b in buckets]
        if by < 0 and sum(available) < -by:
            raise Conflict(
                f"Only {sum(available)} tickets are available to withdraw; held and sold tickets stay.",
                code="not_enough_tickets",
            )
        for bucket, change in zip(buckets, level_change(available=available, by=by), strict=True):
            if change:
                _move_capacity(bucket_id=bucket.pk, by=change)
        Event.objects.filter(pk=event_id).update(capacity=F("capacity") + by)
        if by > 0:
            # Tickets on sale again (after a sell-out, say): let the next fans in.
            transaction.on_commit(lambda: broadcast.wake_admitter(event_id=event_id))


def level_change(*, available: list[int], by: int) -> list[int]:
    """Spread a change of `by` tickets over buckets holding `available`, so
    what is left available is as even as it can be: buckets exist to spread
    reservations over rows, and a change piled onto one undoes that.

    Additions fill the emptiest buckets first, withdrawals drain the
    fullest; ties go to the lowest index.
    """
    sign = 1 if by > 0 else -1
    # Withdrawing from the fullest is adding to the emptiest of the negatives.
    levels = [sign * a for a in available]
    remaining = abs(by)
    # The highest water line every bucket can be raised to within `remaining`.
    low, high = min(levels), min(levels) + remaining
    while low < high:
        line = (low + high + 1) // 2
        if sum(max(0, line - level) for level in levels) <= remaining:
            low = line
        else:
            high = line - 1
    changes = [max(0, low - level) for level in levels]
    remaining -= sum(changes)
    for i in range(len(levels)):  # what is left: one more each, at the line, lowest index first
        if remaining and levels[i] + changes[i] == low:
            changes[i] += 1
            remaining -= 1
    return [sign * change for change in changes]


def _move_capacity(*, bucket_id: int, by: int) -> None:
    InventoryBucket.objects.filter(pk=bucket_id).update(capacity=F("capacity") + by, available=F("available") + by)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:100] or "event"
    slug, n = base, 1
    while Event.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug
