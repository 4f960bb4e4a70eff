"""A fan from sign-up to a paid booking through every real component: the
ASGI server (uvicorn), a Celery worker and beat, localstripe and its signed
webhooks, Postgres and Redis."""

import pytest

from bookings.models import Booking
from tests.factories import make_event
from tests.fan_client import FanClient
from ticketing.selectors import event_inventory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def admitted(status: dict) -> bool:
    return status["status"] == "admitted"


def join_and_get_token(fan: FanClient, event_id: int) -> str:
    response = fan.join(event_id)
    assert response.status_code == 201, response.text
    frames, status = fan.stream_until(event_id, admitted)
    assert status["access_token"] and status["token_expires_at"]
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    return status["access_token"]


def test_fan_books_and_pays_with_a_good_card(stack):
    event = make_event(tickets=10)
    fan = FanClient(stack.base_url)
    fan.sign_up()

    token = join_and_get_token(fan, event.pk)
    response = fan.book(event.pk, 2, token)
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["status"] == "processing" and booking["quantity"] == 2
    assert booking["amount"] == "99.00" and booking["currency"] == "USD"
    assert booking["payment"]["payment_intent"].startswith("pi_")
    assert event_inventory(event_id=event.pk).held == 2

    fan.log_in_to_site()
    paid = fan.pay_on_pay_page(booking["pay_url"], "4242424242424242")
    assert paid.status_code == 302, paid.text

    final = fan.wait_for_booking(booking["id"], "succeeded")
    assert final["status"] == "succeeded", (final, stack.logs())
    inventory = event_inventory(event_id=event.pk)
    assert (inventory.available, inventory.held, inventory.sold) == (8, 0, 2)
    assert fan.http.get(f"/api/v1/events/{event.pk}/").json()["available"] == 8
    assert fan.queue_status(event.pk)["status"] == "booked"


def test_declined_card_fails_the_booking_and_returns_tickets(stack):
    event = make_event(tickets=10)
    fan = FanClient(stack.base_url)
    fan.sign_up()
    booking = fan.book(event.pk, 3, join_and_get_token(fan, event.pk)).json()

    fan.log_in_to_site()
    fan.pay_on_pay_page(booking["pay_url"], "4000000000000341")

    final = fan.wait_for_booking(booking["id"], "failed")
    assert final["status"] == "failed", (final, stack.logs())
    inventory = event_inventory(event_id=event.pk)
    assert (inventory.available, inventory.held, inventory.sold) == (10, 0, 0)


def test_unpaid_hold_expires_cancels_the_intent_and_admits_the_next_fan(stack_factory, local_stripe):
    stack = stack_factory(HOLD_SECONDS=3)
    event = make_event(tickets=2, max_per_order=2)
    first, second = FanClient(stack.base_url), FanClient(stack.base_url)
    first.sign_up()
    second.sign_up()

    booking = first.book(event.pk, 2, join_and_get_token(first, event.pk)).json()
    assert booking["status"] == "processing"
    # Every ticket is held: the second fan waits in line.
    assert second.join(event.pk).status_code == 201
    assert second.queue_status(event.pk)["status"] == "waiting"

    final = first.wait_for_booking(booking["id"], "expired", timeout=30)
    assert final["status"] == "expired", (final, stack.logs())
    intent = local_stripe.get(f"/v1/payment_intents/{booking['payment']['payment_intent']}")
    assert intent["status"] == "canceled"
    assert Booking.objects.get(pk=booking["id"]).holds_tickets is False

    _, status = second.stream_until(event.pk, admitted, timeout=30)
    assert status["access_token"]
    inventory = event_inventory(event_id=event.pk)
    assert (inventory.available, inventory.held, inventory.sold) == (2, 0, 0)


def test_declined_then_good_card_within_the_hold_succeeds(stack):
    event = make_event(tickets=10)
    fan = FanClient(stack.base_url)
    fan.sign_up()
    booking = fan.book(event.pk, 2, join_and_get_token(fan, event.pk)).json()
    fan.log_in_to_site()

    fan.pay_on_pay_page(booking["pay_url"], "4000000000000341")
    assert fan.wait_for_booking(booking["id"], "failed")["status"] == "failed"
    assert event_inventory(event_id=event.pk).available == 10
    fan.pay_on_pay_page(booking["pay_url"], "4242424242424242")

    final = fan.wait_for_booking(booking["id"], "succeeded")
    assert final["status"] == "succeeded", (final, stack.logs())
    assert final["payment"]["payment_intent"] != booking["payment"]["payment_intent"]
    inventory = event_inventory(event_id=event.pk)
    assert (inventory.available, inventory.held, inventory.sold) == (8, 0, 2)
