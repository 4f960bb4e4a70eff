"""The booking flow through the services, in this process, against the real
Postgres and the local Stripe server (webhook effects applied directly)."""

import pytest

from bookings import services as bookings
from bookings.models import Booking
from tests.factories import FanFactory, join_and_admit, make_event
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)


def admitted_token(event, fan) -> str:
    return join_and_admit(event=event, fan=fan)


def test_book_pay_and_sell(local_stripe):
    event = make_event(tickets=10)
    fan = FanFactory()
    token = admitted_token(event, fan)

    booking = bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)

    assert booking.status == Booking.Status.PROCESSING
    assert booking.payment_intent_id.startswith("pi_")
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (8, 2, 0)

    bookings.record_payment_succeeded(booking_id=booking.pk)
    booking.refresh_from_db()
    assert booking.status == Booking.Status.SUCCEEDED
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (8, 0, 2)


def test_cancel_returns_tickets_and_cancels_intent(local_stripe):
    event = make_event(tickets=5)
    fan = FanFactory()
    booking = bookings.book_tickets(event=event, fan=fan, quantity=3, access_token=admitted_token(event, fan))

    cancelled = bookings.cancel_booking(booking_id=booking.pk, fan=fan)

    assert cancelled.status == Booking.Status.CANCELLED
    assert local_stripe.get(f"/v1/payment_intents/{booking.payment_intent_id}")["status"] == "canceled"
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (5, 0, 0)


def test_reservation_spanning_buckets_consolidates(local_stripe, settings):
    settings.INVENTORY_BUCKETS = 4
    event = make_event(tickets=4, max_per_order=4)  # one ticket per bucket
    fan = FanFactory()

    booking = bookings.book_tickets(event=event, fan=fan, quantity=4, access_token=admitted_token(event, fan))

    assert booking.quantity == 4
    inv = event_inventory(event_id=event.pk)
    assert (inv.capacity, inv.available, inv.held) == (4, 0, 4)


def test_a_first_join_returns_the_stored_place_numbered_once_the_sale_is_open():
    from waitlist import services as waitlist
    from waitlist.models import QueueEntry, WaitingRoom

    early_event = make_event(on_sale_in=3600)
    early, created = waitlist.join_queue(event=early_event, fan=FanFactory())
    assert created and early.number is None, "before the sale opens, the pre-queue has no numbers"

    event = make_event()
    WaitingRoom.objects.filter(event=event).update(opened_at=event.on_sale_at, paused=True)  # open, nobody admitted
    first, second = FanFactory(), FanFactory()
    a, a_created = waitlist.join_queue(event=event, fan=first)
    b, _ = waitlist.join_queue(event=event, fan=second)
    again, again_created = waitlist.join_queue(event=event, fan=first)

    assert a_created and not again_created and again.pk == a.pk
    assert (a.number, b.number) == (1, 2)
    stored = QueueEntry.objects.get(pk=a.pk)
    assert (stored.fan_id, stored.number, stored.state, stored.joined_at) == (first.pk, 1, "waiting", a.joined_at)
    assert not a._state.adding, "built as a loaded row: saving it updates, never inserts a second place"
    assert QueueEntry.objects.filter(event=event).count() == 2
