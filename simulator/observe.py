"""What the database says about the on-sale: inventory over time, the final
counts, and the invariants the product promises (ARCHITECTURE.md).

Read-only. The crowd never uses this; the report does, because only the
source of truth can say whether a ticket was sold twice.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce

from bookings.models import Booking
from ticketing.models import Event
from ticketing.selectors import event_inventory
from waitlist.models import QueueEntry


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def inventory_now(*, event_id: int) -> tuple[int, int, int]:
    """(available, held, sold), summed over the event's buckets."""
    inventory = event_inventory(event_id=event_id)
    return inventory.available, inventory.held, inventory.sold


def unsettled_bookings(*, event_id: int) -> int:
    """Bookings still holding tickets or owing a refund: the end is not reached yet."""
    return Booking.objects.filter(Q(status=Booking.Status.PROCESSING) | Q(needs_refund=True), event_id=event_id).count()


def booking_totals(*, event_id: int) -> dict[str, dict[str, int]]:
    """Per booking status: how many bookings and tickets."""
    rows = Booking.objects.filter(event_id=event_id).values("status").annotate(n=Count("id"), tickets=Sum("quantity"))
    totals = {status: {"bookings": 0, "tickets": 0} for status in Booking.Status.values}
    for row in rows:
        totals[row["status"]] = {"bookings": row["n"], "tickets": row["tickets"] or 0}
    totals["late_payments"] = {
        "bookings": Booking.objects.filter(event_id=event_id, late_payment=True).count(),
        "tickets": Booking.objects.filter(event_id=event_id, late_payment=True).aggregate(
            t=Coalesce(Sum("quantity"), 0)
        )["t"],
    }
    return totals


def last_sale_at(*, event_id: int) -> datetime | None:
    return Booking.objects.filter(event_id=event_id, status=Booking.Status.SUCCEEDED).aggregate(t=Max("finished_at"))[
        "t"
    ]


def check_invariants(*, event_id: int) -> list[Check]:
    """sold + held + available == capacity (each >= 0), one place in line per
    fan, and every sold ticket belongs to exactly one succeeded booking."""
    event = Event.objects.get(pk=event_id)
    inventory = event_inventory(event_id=event_id)
    total = inventory.available + inventory.held + inventory.sold
    checks = [
        Check(
            "sold + held + available == capacity",
            total == event.capacity == inventory.capacity
            and min(inventory.available, inventory.held, inventory.sold) >= 0,
            f"{inventory.sold} + {inventory.held} + {inventory.available} = {total}; "
            f"capacity {event.capacity} (buckets {inventory.capacity})",
        )
    ]
    doubled = (
        QueueEntry.objects.filter(event_id=event_id).values("fan_id").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    numbers = (
        QueueEntry.objects.filter(event_id=event_id, number__isnull=False)
        .values("number")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    checks.append(
        Check(
            "no fan with two queue positions",
            doubled == 0 and numbers == 0,
            f"{doubled} fans with more than one entry, {numbers} queue numbers given twice",
        )
    )
    # Paid bookings that own tickets; a staff refund that keeps the tickets
    # out of sale leaves them `refunded` but still owning them.
    sold_by_bookings = Booking.objects.filter(
        event_id=event_id, holds_tickets=True, status__in=[Booking.Status.SUCCEEDED, Booking.Status.REFUNDED]
    ).aggregate(t=Coalesce(Sum("quantity"), 0))["t"]
    checks.append(
        Check(
            "no ticket sold twice (paid bookings' tickets == sold)",
            sold_by_bookings == inventory.sold,
            f"paid bookings own {sold_by_bookings} tickets; inventory says {inventory.sold} sold",
        )
    )
    held_by_bookings = Booking.objects.filter(event_id=event_id, status=Booking.Status.PROCESSING).aggregate(
        t=Coalesce(Sum("quantity"), 0)
    )["t"]
    checks.append(
        Check(
            "held tickets belong to live holds (processing booking tickets == held)",
            held_by_bookings == inventory.held,
            f"processing bookings hold {held_by_bookings} tickets; inventory says {inventory.held} held",
        )
    )
    return checks
