"""Staff work in Django admin: events with their inventory, refunds."""

import time

import pytest
from django.utils import timezone

from bookings import services as bookings
from bookings.models import Booking
from payments import gateway
from tests.factories import FanFactory, admit_directly, make_event
from ticketing.models import Event
from ticketing.selectors import event_inventory

pytestmark = pytest.mark.django_db(transaction=True)


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


def a_line_of(count: int, *, tickets: int):
    """An on-sale event with `count` fans in line, its room paused from admin so nobody is admitted yet."""
    from waitlist import services as waitlist
    from waitlist.models import WaitingRoom

    event = make_event(tickets=tickets)
    WaitingRoom.objects.filter(event=event).update(opened_at=timezone.now(), paused=True)
    for _ in range(count):
        waitlist.join_queue(event=event, fan=FanFactory())
    return event, WaitingRoom.objects.get(event=event)


def room_counts(staff_client, room) -> tuple[int, int, int]:
    response = staff_client.get("/admin/waitlist/waitingroom/")
    assert response.status_code == 200
    (row,) = [r for r in response.context["cl"].result_list if r.pk == room.pk]
    return row.waiting_count, row.admitted_count, row.booked_count


def test_staff_pause_and_resume_a_line_and_see_it_live(staff_client):
    from tests.stack import wait_for
    from waitlist import services as waitlist
    from waitlist.models import QueueEntry, WaitingRoom
    from waitlist.services import admit_fans

    event, room = a_line_of(5, tickets=10)  # paused: nobody admitted
    changelist = "/admin/waitlist/waitingroom/"
    assert admit_fans(event_id=event.pk) == 0
    assert room_counts(staff_client, room) == (5, 0, 0)

    response = staff_client.post(changelist, {"action": "resume", "_selected_action": [room.pk]})
    assert response.status_code == 302 and not WaitingRoom.objects.get(pk=room.pk).paused
    admit_fans(event_id=event.pk)  # what the wake-up sent on resume runs (or a running stack's tick)
    wait_for(lambda: room_counts(staff_client, room) == (0, 5, 0), timeout=10, what="five fans admitted")

    response = staff_client.post(changelist, {"action": "pause", "_selected_action": [room.pk]})
    assert response.status_code == 302 and WaitingRoom.objects.get(pk=room.pk).paused
    for _ in range(2):
        waitlist.join_queue(event=event, fan=FanFactory())
    assert admit_fans(event_id=event.pk) == 0
    assert room_counts(staff_client, room) == (2, 5, 0)
    numbers = list(QueueEntry.objects.filter(event=event).order_by("number").values_list("number", flat=True))
    assert numbers == [1, 2, 3, 4, 5, 6, 7], "paused fans keep their places"
    page = staff_client.get(changelist).content.decode()
    assert "Pause admission" in page and "Resume admission" in page


def test_staff_cap_the_admission_rate(staff_client, settings):
    from tests.stack import wait_for
    from waitlist.models import QueueEntry, WaitingRoom
    from waitlist.services import admit_fans

    settings.ADMISSION_TICK_SECONDS = 2
    event, room = a_line_of(30, tickets=100)
    response = staff_client.post(
        f"/admin/waitlist/waitingroom/{room.pk}/change/", {"admissions_per_minute": "60", "checkout_limit": "1000"}
    )
    assert response.status_code == 302, response.content[:2000]
    assert WaitingRoom.objects.get(pk=room.pk).admissions_per_minute == 60
    WaitingRoom.objects.filter(pk=room.pk).update(paused=False)
    admitted = QueueEntry.objects.filter(event=event, state=QueueEntry.State.ADMITTED)

    started = time.monotonic()
    admit_fans(event_id=event.pk)
    # (A running test stack's tick may be the admitter: it obeys the same cap.)
    wait_for(lambda: admitted.count() == 3, timeout=5, what="a first batch of a tick's worth (1 a second) and one")
    assert admit_fans(event_id=event.pk) <= 1, "(almost) no credit left right after"
    time.sleep(2.2)
    admit_fans(event_id=event.pk)
    elapsed = time.monotonic() - started
    # About one a second after the first batch, however often anyone calls.
    assert 4 <= admitted.count() <= 3 + elapsed + 1
    assert set(admitted.values_list("number", flat=True)) == set(range(1, admitted.count() + 1))


def test_staff_editing_a_limit_mid_sale_keep_the_admitters_work(staff_client):
    from waitlist.models import WaitingRoom

    event, room = a_line_of(3, tickets=10)
    form = staff_client.get(f"/admin/waitlist/waitingroom/{room.pk}/change/")
    assert form.status_code == 200 and b"checkout_limit" in form.content
    # The admitter moves the line while the form is open.
    WaitingRoom.objects.filter(pk=room.pk).update(serving_number=3, admission_rate=2.5)
    for url, data in (
        (f"/admin/waitlist/waitingroom/{room.pk}/change/", {"admissions_per_minute": "0", "checkout_limit": "50"}),
        (
            "/admin/waitlist/waitingroom/",
            {
                "form-TOTAL_FORMS": "1",
                "form-INITIAL_FORMS": "1",
                "form-0-id": str(room.pk),
                "form-0-admissions_per_minute": "30",
                "form-0-checkout_limit": "40",
                "_save": "Save",
            },
        ),
    ):
        assert staff_client.post(url, data).status_code == 302
    saved = WaitingRoom.objects.get(pk=room.pk)
    assert (saved.admissions_per_minute, saved.checkout_limit) == (30, 40)
    assert (saved.serving_number, saved.admission_rate, saved.paused) == (3, 2.5, True)
    # The measured rate is kept per second (the ETA divides by it) and shown per minute.
    assert b"150 fans/min" in staff_client.get("/admin/waitlist/waitingroom/").content


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "2147483648", ""])
def test_staff_get_a_form_error_for_a_bad_limit_and_nothing_changes(staff_client, monkeypatch, bad):
    from waitlist import broadcast
    from waitlist.models import WaitingRoom

    event, room = a_line_of(1, tickets=10)
    woken: list[int] = []
    monkeypatch.setattr(broadcast, "wake_admitter", lambda *, event_id, after=0.0: woken.append(event_id))
    response = staff_client.post(
        f"/admin/waitlist/waitingroom/{room.pk}/change/", {"admissions_per_minute": "0", "checkout_limit": bad}
    )
    assert response.status_code == 200 and b"errornote" in response.content
    assert WaitingRoom.objects.get(pk=room.pk).checkout_limit == 1000
    assert woken == []


def test_a_changed_limit_wakes_the_admitter_once_the_change_is_committed(staff_client, monkeypatch):
    from django.db import connection

    from waitlist import broadcast
    from waitlist.models import WaitingRoom

    seen: list[int] = []

    def wake(*, event_id, after=0.0):
        # What a woken admitter would read: the committed limit, the transaction over.
        assert not connection.in_atomic_block
        seen.append(WaitingRoom.objects.get(event_id=event_id).checkout_limit)

    event, room = a_line_of(1, tickets=10)
    monkeypatch.setattr(broadcast, "wake_admitter", wake)
    response = staff_client.post(
        f"/admin/waitlist/waitingroom/{room.pk}/change/", {"admissions_per_minute": "0", "checkout_limit": "7"}
    )
    assert response.status_code == 302
    assert seen == [7]


@pytest.mark.parametrize("per_minute", [6, 45, 600])
@pytest.mark.parametrize("calls_per_second", [0.5, 10])
def test_the_admission_rate_cap_holds_however_often_the_admitter_runs(settings, per_minute, calls_per_second):
    from datetime import timedelta

    from waitlist.models import WaitingRoom
    from waitlist.services import _rate_allowance, _spend_rate_credit

    settings.ADMISSION_TICK_SECONDS = 2
    room = WaitingRoom(admissions_per_minute=per_minute)
    start = timezone.now()
    admitted = 0
    for step in range(int(120 * calls_per_second)):  # two minutes of wake-ups and ticks
        now = start + timedelta(seconds=step / calls_per_second)
        allowed = _rate_allowance(room=room, now=now)
        _spend_rate_credit(room=room, count=allowed)
        admitted += allowed
    window = 2 * per_minute / 60 + 1  # credit that may be banked: a tick's worth and one fan
    assert 2 * per_minute - window <= admitted <= 2 * per_minute + window
