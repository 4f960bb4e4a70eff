"""Staff work in Django admin: events with their inventory, refunds."""

import pytest
from django.contrib.auth import get_user_model

from bookings import services as bookings
from bookings.models import Booking
from payments import gateway
from tests.factories import FanFactory, admit_directly, make_event
from ticketing.models import Event
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client(client):
    staff = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "pw")
    client.force_login(staff)
    return client


def test_an_event_created_in_admin_gets_its_inventory_and_waiting_room(staff_client):
    response = staff_client.post(
        "/admin/ticketing/event/add/",
        {
            "slug": "admin-show",
            "name": "Admin Show",
            "venue": "Hall",
            "starts_at_0": "2030-01-01",
            "starts_at_1": "20:00:00",
            "on_sale_at_0": "2029-12-01",
            "on_sale_at_1": "10:00:00",
            "price": "25.00",
            "currency": "EUR",
            "capacity": "40",
            "max_per_order": "4",
            "buckets-TOTAL_FORMS": "0",
            "buckets-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    event = Event.objects.get(slug="admin-show")
    inv = event_inventory(event_id=event.pk)
    assert (inv.capacity, inv.available) == (40, 40)
    assert event.waiting_room.serving_number == 0


@pytest.mark.parametrize("return_tickets,expected_sold", [(True, 0), (False, 2)])
def test_staff_refund_from_admin(staff_client, local_stripe, return_tickets, expected_sold):
    event = make_event(tickets=10)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    booking = bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)
    gateway.pay_with_test_card(
        payment_intent_id=booking.payment_intent_id, number="4242424242424242", exp_month=12, exp_year=2035, cvc="123"
    )
    bookings.record_payment_succeeded(booking_id=booking.pk)
    action = "refund_and_return_tickets" if return_tickets else "refund_and_keep_tickets"

    response = staff_client.post("/admin/bookings/booking/", {"action": action, "_selected_action": [booking.pk]})

    assert response.status_code == 302
    booking.refresh_from_db()
    assert booking.status == "refunded" and booking.refund_id.startswith("re_")
    assert "staff@example.com" in booking.refund_note
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.sold) == (10 - expected_sold, expected_sold)
    refunds = local_stripe.get(f"/v1/refunds?payment_intent={booking.payment_intent_id}")["data"]
    assert len(refunds) == 1
    # A second refund of the same booking is refused and changes nothing.
    staff_client.post("/admin/bookings/booking/", {"action": action, "_selected_action": [booking.pk]})
    assert len(local_stripe.get(f"/v1/refunds?payment_intent={booking.payment_intent_id}")["data"]) == 1
    assert Booking.objects.get(pk=booking.pk).status == "refunded"
