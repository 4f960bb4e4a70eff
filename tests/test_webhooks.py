"""The Stripe webhook: verified, recorded once, checked against Stripe,
idempotent, success wins. Intents are real ones at the local Stripe server;
the events are signed here the way Stripe signs them."""

import pytest
from django.test import Client

from bookings import services as bookings
from bookings.models import Booking
from payments import gateway
from payments.models import StripeEvent
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from tests.stripe_events import intent_event, signature, stripe_event
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/payments/stripe/webhook/"
GOOD, DECLINED = "4242424242424242", "4000000000000341"


@pytest.fixture(autouse=True)
def _stripe(local_stripe):
    return local_stripe


def deliver(payload: bytes):
    return Client().post(URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature(payload))


def held_booking(*, tickets=10, quantity=2) -> Booking:
    """A processing booking with a real PaymentIntent at the local Stripe server."""
    event = make_event(tickets=tickets)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    return bookings.book_tickets(event=event, fan=fan, quantity=quantity, access_token=token)


def pay(booking: Booking, card: str = GOOD) -> str:
    return gateway.pay_with_test_card(
        payment_intent_id=booking.payment_intent_id, number=card, exp_month=12, exp_year=2035, cvc="123"
    )


def counts(booking):
    inv = event_inventory(event_id=booking.event_id)
    return inv.available, inv.held, inv.sold


def test_same_event_delivered_five_times_concurrently_applies_once():
    booking = held_booking()
    pay(booking)
    payload = intent_event("payment_intent.succeeded", booking.payment_intent_id, event_id="evt_same")

    responses = run_together([lambda: deliver(payload) for _ in range(5)])

    assert [r.status_code for r in responses] == [200] * 5
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * 4 + ["succeeded"]
    assert StripeEvent.objects.filter(id="evt_same").count() == 1
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    assert counts(booking) == (8, 0, 2)


def test_failure_after_success_keeps_the_booking_succeeded():
    booking = held_booking()
    pay(booking)
    assert deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id)).status_code == 200
    response = deliver(intent_event("payment_intent.payment_failed", booking.payment_intent_id))

    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    assert counts(booking) == (8, 0, 2)


def test_a_late_failure_event_for_a_paid_intent_counts_as_the_payment():
    # The success event is still on its way; Stripe says the intent succeeded.
    booking = held_booking()
    pay(booking)
    assert deliver(intent_event("payment_intent.payment_failed", booking.payment_intent_id)).status_code == 200
    booking.refresh_from_db()
    assert booking.status == "succeeded"


def test_distinct_success_events_for_one_intent_sell_once():
    booking = held_booking()
    pay(booking)
    run_together([lambda: deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id))] * 4)
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    assert StripeEvent.objects.filter(payment_intent_id=booking.payment_intent_id).count() == 4
    assert counts(booking) == (8, 0, 2)


def test_payment_failed_returns_the_tickets_once():
    booking = held_booking()
    assert pay(booking, DECLINED) == "requires_payment_method"
    run_together([lambda: deliver(intent_event("payment_intent.payment_failed", booking.payment_intent_id))] * 3)
    booking.refresh_from_db()
    assert booking.status == "failed" and booking.holds_tickets is False
    assert counts(booking) == (10, 0, 0)


def test_a_forged_success_for_an_unpaid_intent_changes_nothing():
    booking = held_booking()  # nothing paid at Stripe
    response = deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id))
    assert response.status_code == 200
    assert response.json()["outcome"].startswith("ignored")
    booking.refresh_from_db()
    assert booking.status == "processing"
    assert counts(booking) == (8, 2, 0)


def test_a_forged_success_after_a_cancel_does_not_take_tickets_again():
    booking = held_booking()
    bookings.cancel_booking(booking_id=booking.pk, fan=booking.fan)  # the intent is cancelled at Stripe
    deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id))
    booking.refresh_from_db()
    assert (booking.status, booking.needs_refund) == ("cancelled", False)
    assert counts(booking) == (10, 0, 0)


def test_unknown_intent_is_acknowledged_and_recorded():
    response = deliver(intent_event("payment_intent.succeeded", "pi_nobody"))
    assert response.status_code == 200
    assert StripeEvent.objects.get(payment_intent_id="pi_nobody").outcome.startswith("ignored")


def test_intent_found_by_metadata_at_stripe_when_its_id_was_never_stored():
    booking = held_booking()
    intent_id = booking.payment_intent_id
    Booking.objects.filter(pk=booking.pk).update(payment_intent_id="")
    pay(Booking(payment_intent_id=intent_id))
    # The event's own metadata is not trusted: it names another booking.
    response = deliver(intent_event("payment_intent.succeeded", intent_id, booking_id=999999))
    assert response.status_code == 200
    booking.refresh_from_db()
    assert (booking.status, booking.payment_intent_id) == ("succeeded", intent_id)


def test_events_with_text_postgres_cannot_store_are_kept_raw():
    payload = stripe_event("customer.created", {"id": "cus_1", "object": "customer", "name": "a\u0000b\udfff"})
    response = deliver(payload)
    assert response.status_code == 200
    assert StripeEvent.objects.get(type="customer.created").outcome == "ignored: customer.created"


def test_database_error_answers_5xx_and_records_nothing_so_stripe_retries(monkeypatch):
    from django.db import OperationalError

    booking = held_booking()
    pay(booking)
    payload = intent_event("payment_intent.succeeded", booking.payment_intent_id, event_id="evt_retry")

    def broken(**kwargs):
        raise OperationalError("connection lost")

    monkeypatch.setattr(bookings, "record_payment_succeeded", broken)
    response = Client(raise_request_exception=False).post(
        URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature(payload)
    )
    assert response.status_code == 500
    assert not StripeEvent.objects.filter(id="evt_retry").exists()

    monkeypatch.undo()
    assert deliver(payload).status_code == 200
    booking.refresh_from_db()
    assert booking.status == "succeeded"


def test_charge_refunded_at_stripe_marks_the_paid_booking_refunded(local_stripe):
    booking = held_booking()
    pay(booking)
    deliver(intent_event("payment_intent.succeeded", booking.payment_intent_id))
    refund_id = gateway.refund_payment_intent(payment_intent_id=booking.payment_intent_id, booking_id=booking.pk)
    charge_id = local_stripe.get(f"/v1/payment_intents/{booking.payment_intent_id}")["latest_charge"]
    if isinstance(charge_id, dict):
        charge_id = charge_id["id"]
    charge = {"id": charge_id, "object": "charge", "payment_intent": booking.payment_intent_id}

    response = deliver(stripe_event("charge.refunded", charge))

    assert response.status_code == 200, response.content
    booking.refresh_from_db()
    assert (booking.status, booking.refund_id) == ("refunded", refund_id)
    assert counts(booking) == (8, 0, 2)  # the tickets stay off sale until staff decide
