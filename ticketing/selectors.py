"""Reads of events and their inventory totals."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ticketing.models import Event


@dataclass(frozen=True)
class Inventory:
    capacity: int
    available: int
    held: int
    sold: int


def events_with_inventory() -> QuerySet[Event]:
    """Events annotated with their inventory totals (one query, no N+1)."""
    return Event.objects.annotate(
        total_available=Coalesce(Sum("buckets__available"), 0),
        total_held=Coalesce(Sum("buckets__held"), 0),
        total_sold=Coalesce(Sum("buckets__sold"), 0),
    )


# Read on every join, admission and sale: written out, because building the
# ORM's aggregate cost more CPU than running it.
_INVENTORY_SQL = """
SELECT coalesce(sum(capacity), 0), coalesce(sum(available), 0), coalesce(sum(held), 0), coalesce(sum(sold), 0)
FROM ticketing_inventorybucket WHERE event_id = %s
"""


def event_inventory(*, event_id: int) -> Inventory:
    """The event's totals over its buckets (all zero for an event with none)."""
    with connection.cursor() as cursor:
        cursor.execute(_INVENTORY_SQL, [event_id])
        return Inventory(*cursor.fetchone())


def event_status(*, event: Event, available: int, held: int, now=None) -> str:
    """scheduled | on_sale | sold_out | closed, as API.md defines them."""
    now = now or timezone.now()
    if event.sale_closed or event.starts_at <= now:
        return "closed"
    if now < event.on_sale_at:
        return "scheduled"
    if available == 0 and held == 0:
        return "sold_out"
    return "on_sale"
