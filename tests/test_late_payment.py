"""Money that arrives after the hold ended: tickets retaken, or refunded once.

Against the local Stripe server: the hold expires while Stripe cannot be
reached (so the PaymentIntent stays open), then the fan's card payment goes
through and its webhook arrives late.
"""

import pytest
from django.test import Client
from django.utils import timezone

from bookings import services as bookings
from bookings.models import Booking
from bookings.tasks import sweep_overdue_holds
from payments import gateway
from tests.factories import FanFactory, admit_directly, make_event
from tests.stripe_events import intent_event, signature
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)


def deliver(payload: bytes):
    return Client().post(
        "/payments/stripe/webhook/", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature(payload)
    )


def expired_with_open_intent(event, fan, token, quantity, monkeypatch) -> Booking:
    booking = bookings.book_tickets(event=event, fan=fan, quantity=quantity, access_token=token)
    Booking.objects.filter(pk=booking.pk).update(expires_at=timezone.now())

    def unreachable(_intent_id):
        raise gateway.PaymentError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(gateway, "cancel_payment_intent", unreachable)
        assert bookings.expire_hold(booking_id=booking.pk) == "expired"
    booking.refresh_from_db()
    return booking


def pay(booking: Booking) -> None:
    status = gateway.pay_with_test_card(
        payment_intent_id=booking.payment_intent_id, number="4242424242424242", exp_month=12, exp_year=2035, cvc="123"
    )
    assert status == "succeeded"


def test_late_payment_retakes_tickets_still_in_the_pool(local_stripe, monkeypatch):
    event = make_event(tickets=5)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    booking = expired_with_open_intent(event, fan, token, 2, monkeypatch)
    assert event_inventory(event_id=event.pk).available == 5

    pay(booking)
    assert deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id)).status_code == 200

    booking.refresh_from_db()
    assert (booking.status, booking.late_payment, booking.holds_tickets) == ("succeeded", True, True)
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (3, 0, 2)
    assert local_stripe.get(f"/v1/refunds?payment_intent={booking.payment_intent_id}")["data"] == []


def test_late_payment_after_resale_is_refunded_exactly_once(local_stripe, monkeypatch):
    event = make_event(tickets=2, max_per_order=2)
    late_fan, other_fan = FanFactory(), FanFactory()
    late_token, other_token = admit_directly(event=event, fans=[late_fan, other_fan])
    booking = expired_with_open_intent(event, late_fan, late_token, 2, monkeypatch)
    # The returned tickets go to the next fan, who pays for them.
    other = bookings.reserve_tickets(event=event, fan=other_fan, quantity=2, access_token=other_token)
    bookings.record_payment_succeeded(booking_id=other.pk)

    pay(booking)
    for _ in range(3):  # Stripe retries, and sends a second event for the same payment
        assert deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id)).status_code == 200
    sweep_overdue_holds()

    booking.refresh_from_db()
    other.refresh_from_db()
    assert (booking.status, booking.late_payment, booking.needs_refund) == ("refunded", True, False)
    assert booking.refund_id.startswith("re_")
    refunds = local_stripe.get(f"/v1/refunds?payment_intent={booking.payment_intent_id}")["data"]
    assert [r["id"] for r in refunds] == [booking.refund_id]
    assert other.status == "succeeded"
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (0, 0, 2)


def test_a_late_payment_from_an_earlier_turn_is_refunded_once_the_fan_is_in_a_new_one(local_stripe, monkeypatch):
    """Declined (or expired), back in line, booked and paid again: money for
    the first order must not buy a second set of tickets."""
    from waitlist import services as waitlist

    event = make_event(tickets=10, max_per_order=4)
    fan = FanFactory()
    (first_token,) = admit_directly(event=event, fans=[fan])
    first = expired_with_open_intent(event, fan, first_token, 4, monkeypatch)
    entry, _ = waitlist.join_queue(event=event, fan=fan)  # a new turn: back of the line
    assert entry.state == "waiting"

    pay(first)
    assert deliver(intent_event("payment_intent.succeeded", first.payment_intent_id)).status_code == 200
    sweep_overdue_holds()

    first.refresh_from_db()
    assert (first.status, first.late_payment) == ("refunded", True)
    assert [r["id"] for r in local_stripe.get(f"/v1/refunds?payment_intent={first.payment_intent_id}")["data"]] == [
        first.refund_id
    ]
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (10, 0, 0)


def test_a_late_payment_after_leaving_takes_the_tickets_and_the_turn_back(local_stripe, monkeypatch):
    from waitlist import services as waitlist
    from waitlist.models import QueueEntry

    event = make_event(tickets=10, max_per_order=4)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    booking = expired_with_open_intent(event, fan, token, 4, monkeypatch)
    waitlist.leave_queue(event=event, fan=fan)  # allowed: the hold is over

    pay(booking)
    assert deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id)).status_code == 200

    booking.refresh_from_db()
    assert (booking.status, booking.late_payment) == ("succeeded", True)
    assert QueueEntry.objects.get(event=event, fan=fan).state == "booked"
    # Joining again finds the turn that ended in this order, not a new one.
    entry, created = waitlist.join_queue(event=event, fan=fan)
    assert (entry.state, created) == ("booked", False)
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (6, 0, 4)


def test_a_declined_booking_cannot_be_paid_once_the_fan_is_back_in_line(local_stripe):
    from payments import checkout
    from ticketing.errors import Conflict
    from waitlist import services as waitlist

    event = make_event(tickets=10)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    booking = bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)
    bookings.record_payment_failed(booking_id=booking.pk)
    booking.refresh_from_db()
    checkout.check_payable(booking=booking)  # another card, within the hold: allowed

    waitlist.join_queue(event=event, fan=fan)
    with pytest.raises(Conflict, match="back in line") as refused:
        checkout.pay_with_test_card(
            booking=booking, card_number="4242424242424242", exp_month=12, exp_year=35, cvc="123"
        )
    assert refused.value.code == "not_payable"
    booking.refresh_from_db()
    assert booking.status == "failed"
    assert event_inventory(event_id=event.pk).available == 10
