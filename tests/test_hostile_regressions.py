"""Faults a hostile tester found, each kept as a test."""

import json
import threading
import time

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bookings import services as bookings
from bookings.models import Booking
from payments import gateway
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from tests.stack import wait_for
from ticketing.errors import ServiceError
from ticketing.models import Event
from ticketing.selectors import event_inventory
from waitlist import services as waitlist
from waitlist import stream_reads
from waitlist.models import AccessToken, QueueEntry, WaitingRoom
from waitlist.tokens import sign_token

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(fan) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=fan).key}")
    return client


def test_leaving_while_booking_never_deadlocks():
    # Both lock the access token before the queue entry.
    event = make_event(tickets=100)
    fans = [FanFactory() for _ in range(30)]
    tokens = admit_directly(event=event, fans=fans)
    calls = []
    for fan, token in zip(fans, tokens, strict=True):
        calls.append(lambda f=fan, t=token: bookings.reserve_tickets(event=event, fan=f, quantity=1, access_token=t))
        calls.append(lambda f=fan: waitlist.leave_queue(event=event, fan=f))
    results = run_together(calls, threads=20)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, ServiceError)]
    assert unexpected == []
    # Each fan either booked (then left the line) or left first and was refused.
    for booked, left in zip(results[::2], results[1::2], strict=True):
        assert isinstance(booked, Booking) or getattr(booked, "code", None) == "invalid_token", booked
        assert left is None or getattr(left, "code", None) == "not_in_queue"


@pytest.mark.parametrize("path", ["/api/v1/accounts/", "/api/v1/accounts/token/", "/api/v1/bookings/"])
def test_deeply_nested_json_is_a_400(path):
    client = client_for(FanFactory())
    body = '{"email": ' + "[" * 5000 + "]" * 5000 + "}"
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/accounts/", '{"email": "s1@example.com", "password": "Zx9!Zx9!\\udfff"}'),
        ("/api/v1/accounts/token/", '{"email": "\\ud800@example.com", "password": "x"}'),
    ],
)
def test_unpaired_surrogates_are_a_400(path, body):
    response = APIClient(raise_request_exception=False).post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_rejoining_concurrently_after_leaving_creates_one_place():
    event = make_event(tickets=10)
    fan = FanFactory()
    waitlist.join_queue(event=event, fan=fan)
    waitlist.leave_queue(event=event, fan=fan)
    results = run_together([lambda: waitlist.join_queue(event=event, fan=fan) for _ in range(10)])
    assert sum(created for _, created in results) == 1
    assert QueueEntry.objects.filter(event=event, fan=fan).count() == 1


def test_an_unexpected_api_error_is_json():
    event = make_event(tickets=10)
    client = client_for(FanFactory())
    from unittest import mock

    with mock.patch("waitlist.services.join_queue", side_effect=RuntimeError("bug")):
        response = client.post(f"/api/v1/events/{event.pk}/queue/")
    assert response.status_code == 500
    assert json.loads(response.content)["error"] == "server_error"


@pytest.mark.parametrize("path", ["/api/v1/accounts/", "/api/v1/accounts/token/", "/api/v1/bookings/"])
def test_a_body_over_the_upload_limit_is_a_413_and_changes_nothing(path, settings):
    client = client_for(FanFactory())
    users = get_user_model().objects.count()
    body = json.dumps({"email": "big@example.com", "password": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert get_user_model().objects.count() == users


def test_the_webhook_answers_json_to_an_oversized_body_and_a_wrong_method(settings):
    client = APIClient(raise_request_exception=False)
    response = client.post(
        "/payments/stripe/webhook/", "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    response = client.get("/payments/stripe/webhook/")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "POST"


# --- Second hostile round: the waiting room's fairness and leaving the line ---


def test_fans_who_join_after_on_sale_but_before_the_admitter_opens_it_are_not_shuffled_in():
    event = make_event(tickets=1, on_sale_in=3600)
    # Paused, so no admitter (a running test stack's tick included) opens the sale early.
    WaitingRoom.objects.filter(event=event).update(paused=True)
    early = [FanFactory() for _ in range(5)]
    for fan in early:
        waitlist.join_queue(event=event, fan=fan)
    Event.objects.filter(pk=event.pk).update(on_sale_at=timezone.now())
    event.refresh_from_db()
    late = [FanFactory() for _ in range(3)]
    for fan in late:  # on sale, but no admitter has run yet
        waitlist.join_queue(event=event, fan=fan)
    assert not WaitingRoom.objects.get(event=event).opened_at

    WaitingRoom.objects.filter(event=event).update(paused=False)
    waitlist.admit_fans(event_id=event.pk)
    wait_for(lambda: WaitingRoom.objects.get(event=event).opened_at, timeout=10, what="the sale opened")
    wait_for(
        lambda: not QueueEntry.objects.filter(event=event, number__isnull=True).exists(), timeout=10, what="numbers"
    )
    numbers = dict(QueueEntry.objects.filter(event=event).values_list("fan_id", "number"))
    assert sorted(numbers[f.pk] for f in early) == [1, 2, 3, 4, 5]
    assert [numbers[f.pk] for f in late] == [6, 7, 8], "after the pre-queue, in join order"
    assert WaitingRoom.objects.get(event=event).pre_queue_size == 5


def test_a_fan_who_leaves_while_being_admitted_stays_gone():
    event = make_event(tickets=5)
    WaitingRoom.objects.filter(event=event).update(opened_at=timezone.now(), paused=True)
    fans = [FanFactory() for _ in range(3)]
    for fan in fans:
        waitlist.join_queue(event=event, fan=fan)
    leaver = QueueEntry.objects.get(event=event, fan=fans[1])

    # The fan's leave is in flight (row locked, not committed) while the
    # admitter reads the line and admits.
    with psycopg.connect(**stream_reads._conninfo()) as other:
        other.execute("UPDATE waitlist_queueentry SET state = 'left' WHERE id = %s", [leaver.pk])
        WaitingRoom.objects.filter(event=event).update(paused=False)
        admitting = threading.Thread(target=lambda: (waitlist.admit_fans(event_id=event.pk), connection.close()))
        admitting.start()
        time.sleep(0.5)
        other.commit()
    admitting.join(10)

    # Whichever admitter got the room (a running test stack's tick may race
    # this one), the two who stayed are admitted and the leaver stays gone.
    admitted = QueueEntry.objects.filter(event=event, state=QueueEntry.State.ADMITTED)
    wait_for(lambda: admitted.count() == 2, timeout=10, what="the two fans who stayed admitted")
    assert set(admitted.values_list("fan_id", flat=True)) == {fans[0].pk, fans[2].pk}
    leaver.refresh_from_db()
    assert leaver.state == QueueEntry.State.LEFT
    assert not AccessToken.objects.filter(entry=leaver).exists()


def test_a_fan_who_tries_to_leave_while_stripe_is_down_keeps_the_turn_until_the_hold_is_released(monkeypatch):
    """Leaving is refused while the turn's booking holds tickets (else a rejoin
    could hold a second order); once the failed payment releases the hold the
    token is usable again, and leaving then ends the turn for good."""
    event = make_event(tickets=4)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    refused_leaves = []

    def leave_then_fail(**kwargs):
        with pytest.raises(ServiceError) as left:
            waitlist.leave_queue(event=event, fan=fan)  # from another tab, while Stripe hangs
        refused_leaves.append(left.value.code)
        raise gateway.PaymentError("timed out")

    monkeypatch.setattr(gateway, "create_payment_intent", leave_then_fail)
    with pytest.raises(ServiceError) as refused:
        bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)
    assert refused.value.code == "payment_unavailable"
    assert refused_leaves == ["not_in_queue"]
    assert QueueEntry.objects.get(event=event, fan=fan).state == QueueEntry.State.ADMITTED
    assert AccessToken.objects.get(fan=fan).used_at is None
    assert event_inventory(event_id=event.pk).available == 4

    waitlist.leave_queue(event=event, fan=fan)
    assert QueueEntry.objects.get(event=event, fan=fan).state == QueueEntry.State.LEFT
    with pytest.raises(ServiceError) as again:
        bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)
    assert again.value.code in ("invalid_token", "token_expired")


def test_a_hold_cancelled_while_its_intent_is_created_gets_no_live_intent(local_stripe, monkeypatch):
    event = make_event(tickets=4)
    fan = FanFactory()
    (token,) = admit_directly(event=event, fans=[fan])
    create = gateway.create_payment_intent
    created = []

    def create_while_the_fan_cancels(**kwargs):
        bookings.cancel_booking(booking_id=kwargs["booking_id"], fan=fan)  # another tab, during the Stripe call
        created.append(create(**kwargs))
        return created[-1]

    monkeypatch.setattr(gateway, "create_payment_intent", create_while_the_fan_cancels)
    with pytest.raises(ServiceError) as refused:
        bookings.book_tickets(event=event, fan=fan, quantity=2, access_token=token)
    assert (refused.value.code, refused.value.status) == ("booking_ended", 409)
    booking = Booking.objects.get(fan=fan)
    assert booking.status == Booking.Status.CANCELLED and booking.payment_intent_id == ""
    assert local_stripe.get(f"/v1/payment_intents/{created[0][0]}")["status"] == "canceled"
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (4, 0, 0)


def test_a_token_given_up_by_leaving_stays_dead_after_a_quick_rejoin():
    event = make_event(tickets=4)
    fan = FanFactory()
    waitlist.join_queue(event=event, fan=fan)
    waitlist.admit_fans(event_id=event.pk)
    wait_for(lambda: AccessToken.objects.filter(fan=fan).exists(), timeout=10, what="admitted")
    old = sign_token(token_id=AccessToken.objects.get(fan=fan).pk, event_id=event.pk, fan_id=fan.pk)
    waitlist.leave_queue(event=event, fan=fan)
    waitlist.join_queue(event=event, fan=fan)
    waitlist.admit_fans(event_id=event.pk)
    wait_for(
        lambda: QueueEntry.objects.get(event=event, fan=fan).state == QueueEntry.State.ADMITTED,
        timeout=10,
        what="readmitted",
    )

    with pytest.raises(ServiceError) as refused:
        bookings.reserve_tickets(event=event, fan=fan, quantity=1, access_token=old)
    assert refused.value.status == 403
    assert event_inventory(event_id=event.pk).held == 0
    new = AccessToken.objects.filter(fan=fan, used_at__isnull=True).latest("issued_at")
    booking = bookings.reserve_tickets(
        event=event, fan=fan, quantity=1, access_token=sign_token(token_id=new.pk, event_id=event.pk, fan_id=fan.pk)
    )
    assert booking.status == Booking.Status.PROCESSING


def test_joining_and_leaving_are_rate_limited_per_fan(monkeypatch):
    from django.core.cache import cache

    from waitlist.api import QueueThrottle

    # DRF reads the rates when the throttle class is defined.
    monkeypatch.setattr(QueueThrottle, "THROTTLE_RATES", {**QueueThrottle.THROTTLE_RATES, "queue": "4/min"})
    cache.clear()
    event = make_event(tickets=4)
    api = client_for(FanFactory())
    url = f"/api/v1/events/{event.pk}/queue/"
    codes = [api.post(url).status_code, api.delete(url).status_code, api.post(url).status_code]
    codes.append(api.delete(url).status_code)
    limited = api.post(url)
    assert codes == [201, 204, 201, 204]
    assert limited.status_code == 429 and limited.json()["error"] and int(limited["Retry-After"]) > 0
    assert api.get(url).status_code == 404, "reading is not limited; the refused join changed nothing"


def test_the_site_pages_share_the_per_fan_limit_on_joining_and_leaving(client, monkeypatch):
    from django.core.cache import cache

    from waitlist.api import QueueThrottle

    monkeypatch.setattr(QueueThrottle, "THROTTLE_RATES", {**QueueThrottle.THROTTLE_RATES, "queue": "4/min"})
    cache.clear()
    event = make_event(tickets=4)
    fan = FanFactory()
    client.force_login(fan)
    for _ in range(2):
        assert client.post(f"/events/{event.pk}/join/").status_code == 302
        assert client.post(f"/events/{event.pk}/leave/").status_code == 302
    number_before = QueueEntry.objects.get(event=event, fan=fan).number
    refused = client.post(f"/events/{event.pk}/join/")
    assert refused.status_code == 303 and int(refused["Retry-After"]) > 0
    entry = QueueEntry.objects.get(event=event, fan=fan)
    assert (entry.state, entry.number) == (QueueEntry.State.LEFT, number_before), "the refused join changed nothing"


def test_a_leave_that_waits_for_a_booking_in_flight_sees_it_and_is_refused():
    """Found by a hostile review: the fan's old token (expired within the
    leeway) is locked elsewhere, so the leave waits; meanwhile the fan is
    admitted again and books with the new token. The leave must see that
    booking once it gets the entry, not mark a booked turn `left`."""
    from bookings import reservation

    event = make_event(tickets=20, max_per_order=2)
    WaitingRoom.objects.filter(event=event).update(opened_at=timezone.now())
    fan = FanFactory()
    (old_token,) = admit_directly(event=event, fans=[fan])
    old = AccessToken.objects.get(fan=fan, event=event)
    AccessToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timezone.timedelta(seconds=2))
    assert waitlist.join_queue(event=event, fan=fan)[0].state == QueueEntry.State.WAITING

    outcome = {}

    def leave():
        try:
            waitlist.leave_queue(event=event, fan=fan)
            outcome["leave"] = "left"
        except ServiceError as exc:
            outcome["leave"] = exc.code
        finally:
            connection.close()

    with psycopg.connect(**stream_reads._conninfo()) as holder, psycopg.connect(**stream_reads._conninfo()) as booker:
        holder.execute("SELECT 1 FROM waitlist_accesstoken WHERE id = %s FOR UPDATE", [old.pk])
        leaving = threading.Thread(target=leave)
        leaving.start()
        time.sleep(0.5)  # the leave now waits for the old token
        assert leaving.is_alive()
        # Readmitted, as the admitter would (a test stack's tick may do it first).
        entry = QueueEntry.objects.get(event=event, fan=fan)
        QueueEntry.objects.filter(pk=entry.pk).update(state=QueueEntry.State.ADMITTED, admitted_at=timezone.now())
        new = AccessToken.objects.create(
            entry=entry,
            event=event,
            fan=fan,
            issued_at=timezone.now(),
            expires_at=timezone.now() + timezone.timedelta(minutes=5),
        )
        params = reservation._statement_params(event=event, fan_id=fan.pk, quantity=2, token_id=new.pk)
        params["first_bucket"] = 0
        assert booker.execute(reservation._RESERVE_IN_ONE_STATEMENT, params).fetchone() is not None
        holder.rollback()  # the leave moves on to the entry, which the booking holds
        time.sleep(0.5)
        assert leaving.is_alive()
        booker.commit()
    leaving.join(10)

    assert outcome == {"leave": "not_in_queue"}
    assert QueueEntry.objects.get(event=event, fan=fan).state == QueueEntry.State.BOOKED
    assert Booking.objects.get(event=event, fan=fan).status == "processing"
    assert waitlist.join_queue(event=event, fan=fan)[1] is False
