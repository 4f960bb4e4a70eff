"""Stripe unreachable at booking time: 503, the hold released, the token still usable."""

import pytest

from bookings.models import Booking
from payments import gateway
from tests.factories import admit_directly, make_event
from ticketing.selectors import event_inventory
from waitlist import broadcast
from waitlist.models import AccessToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_booking_when_stripe_is_down_releases_the_hold_and_keeps_the_token(api, fan, local_stripe, monkeypatch):
    event = make_event(tickets=4)
    (token,) = admit_directly(event=event, fans=[fan])

    def unreachable(**kwargs):
        raise gateway.PaymentError("connection refused")

    freed_while_down: list[int] = []
    with monkeypatch.context() as patch:
        patch.setattr(gateway, "create_payment_intent", unreachable)
        patch.setattr(broadcast, "checkout_place_freed", lambda *, event_id: freed_while_down.append(event_id))
        response = api.post(
            "/api/v1/bookings/", {"event": event.pk, "quantity": 2, "access_token": token}, format="json"
        )

    assert response.status_code == 503
    assert response.json()["error"] == "payment_unavailable"
    # The token comes back: its place at checkout was never given away.
    assert freed_while_down == []
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held) == (4, 0)
    assert AccessToken.objects.get(fan=fan).used_at is None
    failed = Booking.objects.get(fan=fan)
    assert (failed.status, failed.failure_reason, failed.access_token_id) == ("failed", "payment_unavailable", None)

    # Stripe is back: the same token books.
    freed: list[int] = []
    monkeypatch.setattr(broadcast, "checkout_place_freed", lambda *, event_id: freed.append(event_id))
    retry = api.post("/api/v1/bookings/", {"event": event.pk, "quantity": 2, "access_token": token}, format="json")
    assert retry.status_code == 201, retry.json()
    assert retry.json()["payment"]["payment_intent"].startswith("pi_")
    assert event_inventory(event_id=event.pk).held == 2
    assert freed == [event.pk], "only a booking that keeps its token frees a place at checkout"
