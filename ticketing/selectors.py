"""Reads of events and their inventory totals."""

from dataclasses import dataclass

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


def event_inventory(*, event_id: int) -> Inventory:
    totals = Event.objects.filter(pk=event_id).aggregate(
        capacity=Coalesce(Sum("buckets__capacity"), 0),
        available=Coalesce(Sum("buckets__available"), 0),
        held=Coalesce(Sum("buckets__held"), 0),
        sold=Coalesce(Sum("buckets__sold"), 0),
    )
    return Inventory(**totals)


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
