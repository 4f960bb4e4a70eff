"""Admission paced by how quickly checkout answers: the meter in the web
processes, the window the admitter keeps, and both together over real processes."""

import asyncio
import threading
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from config.checkout_load import CheckoutMeter, recent_checkout_load
from config.load_shedding import Lanes
from tests.factories import make_event
from tests.stack import wait_for
from tests.test_waiting_room import api_client, fans_with_api_keys, join_all
from waitlist import services
from waitlist.models import AccessToken, QueueEntry, WaitingRoom
from waitlist.pacing import checkout_window

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _pacing_settings(settings):
    settings.CHECKOUT_PACING = True
    settings.CHECKOUT_SLOW_SECONDS = 0.25
    settings.CHECKOUT_SLOW_SHARE = 0.05
    settings.CHECKOUT_LOAD_SECONDS = 3
    settings.CHECKOUT_WINDOW_START = 50
    settings.CHECKOUT_WINDOW_MIN = 20
    settings.CHECKOUT_WINDOW_STEP_SECONDS = 1.0
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def checkout_answered(*durations: float, meter: CheckoutMeter | None = None) -> None:
    """Checkout requests that took these many seconds end now, in one process; flushed to Redis."""
    meter = meter or CheckoutMeter()

    async def main():
        for seconds in durations:
            meter.record(seconds=seconds)
        await meter._flusher

    asyncio.run(main())


def a_second_later():
    """The admitter reads whole seconds before its own: this one's counts, a second on."""
    return timezone.now() + timedelta(seconds=1)


def an_open_room(*, window: int, limit: int = 1000, tickets: int = 100) -> WaitingRoom:
    # Paused, so a running test stack's admitter leaves it alone; these tests
    # call the window's policy themselves.
    event = make_event(tickets=tickets)
    WaitingRoom.objects.filter(event=event).update(
        paused=True, opened_at=timezone.now(), checkout_window=window, checkout_limit=limit
    )
    return WaitingRoom.objects.get(event=event)


def test_checkout_requests_are_counted_per_second_across_processes():
    started = time.time()
    checkout_answered(0.05, 0.1, 0.3)
    checkout_answered(0.02, 2.0)  # another web process
    load = recent_checkout_load(seconds=3, now=time.time() + 1)
    assert (load.requests, load.slow) == (5, 2)
    # A second still under way is not read: it is not over yet.
    assert recent_checkout_load(seconds=3, now=started).requests == 0


def test_only_the_checkout_lane_is_metered_with_its_wait_for_a_slot():
    async def app(scope, receive, send):
        await asyncio.sleep(0.15)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    meter = CheckoutMeter()
    lanes = Lanes(app, concurrency=1, queue=10, wait_seconds=5, checkout_meter=meter)

    async def request(path: str):
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await lanes({"type": "http", "path": path, "method": "GET"}, receive, send)

    async def main():
        # One slot: the second booking request waits 0.15 s for it, so takes 0.3 s in all.
        await asyncio.gather(request("/api/v1/bookings/"), request("/api/v1/bookings/7/"))
        await request("/api/v1/events/1/queue/")
        await request("/api/v1/events/")
        await meter._flusher

    asyncio.run(main())
    load = recent_checkout_load(seconds=3, now=time.time() + 1)
    assert (load.requests, load.slow) == (2, 1)


def test_a_client_that_trickles_its_body_does_not_make_checkout_look_slow():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    meter = CheckoutMeter()
    lanes = Lanes(app, concurrency=1, queue=10, wait_seconds=5, checkout_meter=meter)
    chunks = [(0.0, b'{"event": 1, ', True), (0.6, b'"quantity": 1}', False)]

    async def main():
        async def receive():
            delay, body, more = chunks.pop(0)
            await asyncio.sleep(delay)
            return {"type": "http.request", "body": body, "more_body": more}

        async def send(message):
            pass

        await lanes({"type": "http", "path": "/api/v1/bookings/", "method": "POST"}, receive, send)
        await meter._flusher

    asyncio.run(main())
    load = recent_checkout_load(seconds=3, now=time.time() + 1)
    assert (load.requests, load.slow) == (1, 0)


def test_the_window_narrows_by_a_third_while_checkout_is_slow_but_not_below_the_floor():
    room = an_open_room(window=60)
    checkout_answered(*[0.05] * 90, *[0.5] * 10)  # 10% slow: over the 5% allowed
    assert checkout_window(room=room, outstanding=60, now=a_second_later()) == 40
    room.checkout_window_at = None
    assert checkout_window(room=room, outstanding=60, now=a_second_later()) == 26
    room.checkout_window_at = None
    assert checkout_window(room=room, outstanding=60, now=a_second_later()) == 20
    stored = WaitingRoom.objects.get(pk=room.pk)
    assert stored.checkout_window == 20 and stored.checkout_window_at is not None


def test_the_window_widens_by_a_quarter_while_checkout_is_quick_and_the_window_is_in_use():
    room = an_open_room(window=40)
    checkout_answered(*[0.05] * 99, 0.5)  # 1% slow: within the 5% allowed
    assert checkout_window(room=room, outstanding=20, now=a_second_later()) == 50
    # Half the window unused: checkout has not shown it can take more.
    room.checkout_window_at = None
    assert checkout_window(room=room, outstanding=24, now=a_second_later()) == 50
    # No checkout requests at all (nobody admitted has booked yet) is not slowness.
    room.checkout_window_at = None
    assert checkout_window(room=room, outstanding=50, now=timezone.now() + timedelta(seconds=30)) == 62


def test_the_window_never_passes_the_staff_limit_and_pacing_can_be_switched_off(settings):
    room = an_open_room(window=90, limit=100)
    assert checkout_window(room=room, outstanding=90, now=a_second_later()) == 100
    room.checkout_limit = 0  # no staff limit: the window alone
    room.checkout_window_at = None
    assert checkout_window(room=room, outstanding=100, now=a_second_later()) == 125
    settings.CHECKOUT_PACING = False
    assert checkout_window(room=room, outstanding=100, now=a_second_later()) is None
    room.checkout_limit = 30
    assert checkout_window(room=room, outstanding=100, now=a_second_later()) == 30


def test_a_limit_staff_lower_within_a_step_applies_at_once():
    room = an_open_room(window=90, limit=1000)
    now = a_second_later()
    assert checkout_window(room=room, outstanding=0, now=now) == 90
    room.checkout_limit = 30  # saved by staff half a second later
    assert checkout_window(room=room, outstanding=0, now=now + timedelta(seconds=0.5)) == 30


def test_the_window_moves_at_most_once_a_step_and_starts_where_settings_say():
    room = an_open_room(window=0)
    checkout_answered(*[0.5] * 10)
    first = a_second_later()
    assert checkout_window(room=room, outstanding=0, now=first) == 33  # 50, narrowed
    assert checkout_window(room=room, outstanding=0, now=first + timedelta(seconds=0.5)) == 33
    assert checkout_window(room=room, outstanding=0, now=first + timedelta(seconds=1)) == 22


def test_the_admitter_lets_in_no_more_than_the_window_and_refills_it_as_fans_book():
    room = an_open_room(window=10)
    for _ in range(30):
        services.join_queue(event=room.event, fan=_a_fan())
    # Held still for this test: the step's clock is in the future.
    WaitingRoom.objects.filter(pk=room.pk).update(paused=False, checkout_window_at=timezone.now() + timedelta(hours=1))
    services.admit_fans(event_id=room.event_id)
    tokens = AccessToken.objects.filter(event_id=room.event_id)
    assert tokens.count() == 10
    # Four of them book: four places in the window are free again.
    booked = list(tokens.values_list("pk", "entry_id")[:4])
    tokens.filter(pk__in=[pk for pk, _ in booked]).update(used_at=timezone.now())
    QueueEntry.objects.filter(pk__in=[entry for _, entry in booked]).update(state=QueueEntry.State.BOOKED)
    services.admit_fans(event_id=room.event_id)
    assert tokens.count() == 14
    assert QueueEntry.objects.filter(event_id=room.event_id, state=QueueEntry.State.WAITING).count() == 16


def _a_fan():
    from tests.factories import FanFactory

    return FanFactory()


@pytest.mark.stack
def test_slow_checkout_holds_the_line_back_across_processes_and_quick_checkout_lets_it_go(stack_factory):
    """Web processes measure checkout, the worker's admitter reads it: while
    every checkout request counts as slow the window falls to its floor and
    only bookings let the next fans in; once checkout is quick it widens."""
    stack = stack_factory(
        CHECKOUT_SLOW_SECONDS="0",
        CHECKOUT_WINDOW_START="6",
        CHECKOUT_WINDOW_MIN="3",
        ADMISSION_TICK_SECONDS="0.5",
    )
    event = make_event(tickets=20, max_per_order=1)
    WaitingRoom.objects.filter(event=event).update(paused=True, opened_at=timezone.now())
    fans = fans_with_api_keys(10)
    assert join_all(stack.base_url, event.pk, fans, threads=1) == [201] * 10
    clients = [api_client(stack.base_url, key) for _, key in fans]

    # A fan keeps reading their bookings: checkout requests, each one "slow" here.
    stop = threading.Event()

    def keep_checkout_busy():
        while not stop.is_set():
            clients[0].api("GET", "/api/v1/bookings/")
            time.sleep(0.05)

    busy = threading.Thread(target=keep_checkout_busy)
    busy.start()
    try:
        stack_redis = redis.Redis.from_url(stack.env["REDIS_URL"])
        # A whole second of it, as the admitter reads them.
        wait_for(
            lambda: stack_redis.exists(f"checkout_load:{int(time.time()) - 1}"),
            timeout=10,
            what="a second of checkout load in the stack's Redis",
        )
        WaitingRoom.objects.filter(event=event).update(paused=False)  # the next tick admits
        room = lambda: WaitingRoom.objects.get(event=event)  # noqa: E731
        wait_for(lambda: room().checkout_window == 3, timeout=15, what="the window at its floor")
        tokens = AccessToken.objects.filter(event=event)
        issued = tokens.count()
        # The first run may have read no load yet (only whole seconds count).
        assert 3 <= issued <= 6, "never more than the window it started with"
        time.sleep(1.5)  # three more admission ticks: the floor lets nobody else in
        assert tokens.count() == issued

        # Admitted fans book until two are left choosing: exactly one more
        # fan fills the window of three, nobody else.
        admitted = [c for c in clients if c.queue_status(event.pk)["status"] == "admitted"]
        for client in admitted[: issued - 2]:
            token = client.queue_status(event.pk)["access_token"]
            assert client.book(event.pk, 1, token).status_code == 201
        wait_for(lambda: tokens.filter(used_at__isnull=True).count() == 3, timeout=10, what="the window refilled")
        time.sleep(2)  # four more admission ticks
        assert tokens.count() == issued + 1 and tokens.filter(used_at__isnull=True).count() == 3
    finally:
        stop.set()
        busy.join()

    # Checkout quiet: the window widens and the rest of the line comes in.
    wait_for(lambda: tokens.count() == 10, timeout=20, what="everyone admitted once checkout was quick")
    assert room().checkout_window > 3
