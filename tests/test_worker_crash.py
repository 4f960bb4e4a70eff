"""Holds whose countdown tasks are lost (worker SIGKILLed, Redis flushed) are
still expired by the sweeper once a worker is back, exactly once."""

import time

import pytest
import redis
from rest_framework.authtoken.models import Token

from bookings.models import Booking
from tests.factories import FanFactory, admit_directly, make_event
from tests.fan_client import FanClient
from ticketing.selectors import event_inventory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

HOLD_SECONDS = 4
SWEEP_SECONDS = 2


def test_holds_expire_after_worker_crash_and_broker_flush(stack_factory):
    stack = stack_factory(HOLD_SECONDS=HOLD_SECONDS, HOLD_SWEEP_SECONDS=SWEEP_SECONDS)
    event = make_event(tickets=20)
    fans = [FanFactory() for _ in range(5)]
    tokens = admit_directly(event=event, fans=fans)
    booking_ids = []
    for fan, token in zip(fans, tokens, strict=True):
        client = FanClient(stack.base_url)
        client.token = Token.objects.create(user=fan).key
        response = client.book(event.pk, 2, token)
        assert response.status_code == 201, response.text
        booking_ids.append(response.json()["id"])
    assert event_inventory(event_id=event.pk).held == 10

    # The worker dies with the countdown tasks in its memory; the broker loses the rest.
    stack.processes["worker"].kill()
    stack.processes["worker"].popen.wait(timeout=10)
    redis.Redis.from_url(stack.env["REDIS_URL"]).flushdb()
    time.sleep(HOLD_SECONDS)
    assert Booking.objects.filter(pk__in=booking_ids, status="processing").count() == 5

    stack.start_worker("worker-2")
    restarted = time.monotonic()
    deadline = restarted + HOLD_SECONDS + SWEEP_SECONDS + 10  # + slack for a loaded CI machine
    while time.monotonic() < deadline and Booking.objects.filter(pk__in=booking_ids, status="processing").exists():
        time.sleep(0.2)

    statuses = list(Booking.objects.filter(pk__in=booking_ids).values_list("status", "holds_tickets"))
    assert statuses == [("expired", False)] * 5, stack.logs()
    inv = event_inventory(event_id=event.pk)
    assert (inv.available, inv.held, inv.sold) == (20, 0, 0)
