"""The Stripe webhook: verified, recorded once, idempotent, success wins."""

import pytest
from django.test import Client

from bookings import services as bookings
from bookings.models import Booking
from payments.models import StripeEvent
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from tests.stripe_events import intent_event, signature
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/payments/stripe/webhook/"


def deliver(payload: bytes):
    return Client().post(URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature(payload))


def held_booking(*, tickets=10, quantity=2, intent_id="pi_test_1") -> Booking:
    event = make_event(tickets=tickets)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    booking = bookings.reserve_tickets(event=event, fan=fan, quantity=quantity, access_token=token)
    Booking.objects.filter(pk=booking.pk).update(payment_intent_id=intent_id)
    return booking


def test_same_event_delivered_five_times_concurrently_applies_once():
    booking = held_booking(intent_id="pi_dupe")
    payload = intent_event("payment_intent.succeeded", "pi_dupe", event_id="evt_same")

    responses = run_together([lambda: deliver(payload) for _ in range(5)])

    assert [r.status_code for r in responses] == [200] * 5
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["duplicate"] * 4 + ["succeeded"]
    assert StripeEvent.objects.filter(id="evt_same").count() == 1
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    inv = event_inventory(event_id=booking.event_id)
    assert (inv.available, inv.held, inv.sold) == (8, 0, 2)


def test_failure_after_success_keeps_the_booking_succeeded():
    booking = held_booking(intent_id="pi_order")
    assert deliver(intent_event("payment_intent.succeeded", "pi_order")).status_code == 200
    response = deliver(intent_event("payment_intent.payment_failed", "pi_order"))

    assert response.status_code == 200
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    inv = event_inventory(event_id=booking.event_id)
    assert (inv.available, inv.held, inv.sold) == (8, 0, 2)


def test_distinct_success_events_for_one_intent_sell_once():
    booking = held_booking(intent_id="pi_twice")
    run_together([lambda: deliver(intent_event("payment_intent.succeeded", "pi_twice")) for _ in range(4)])
    booking.refresh_from_db()
    assert booking.status == "succeeded"
    assert StripeEvent.objects.filter(payment_intent_id="pi_twice").count() == 4
    inv = event_inventory(event_id=booking.event_id)
    assert (inv.available, inv.held, inv.sold) == (8, 0, 2)


def test_payment_failed_returns_the_tickets_once():
    booking = held_booking(intent_id="pi_declined")
    run_together([lambda: deliver(intent_event("payment_intent.payment_failed", "pi_declined")) for _ in range(3)])
    booking.refresh_from_db()
    assert booking.status == "failed" and booking.holds_tickets is False
    inv = event_inventory(event_id=booking.event_id)
    assert (inv.available, inv.held, inv.sold) == (10, 0, 0)


def test_unknown_intent_is_acknowledged_and_recorded():
    response = deliver(intent_event("payment_intent.succeeded", "pi_nobody"))
    assert response.status_code == 200
    assert StripeEvent.objects.get(payment_intent_id="pi_nobody").outcome.startswith("ignored")


def test_intent_found_by_metadata_when_its_id_was_never_stored():
    booking = held_booking(intent_id="")
    response = deliver(intent_event("payment_intent.succeeded", "pi_unsaved", booking_id=booking.pk))
    assert response.status_code == 200
    booking.refresh_from_db()
    assert (booking.status, booking.payment_intent_id) == ("succeeded", "pi_unsaved")


def test_database_error_answers_5xx_and_records_nothing_so_stripe_retries(monkeypatch):
    from django.db import OperationalError

    booking = held_booking(intent_id="pi_retry")
    payload = intent_event("payment_intent.succeeded", "pi_retry", event_id="evt_retry")

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
