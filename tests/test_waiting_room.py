"""The waiting room over real processes: fair start, admission, sold out,
several ASGI processes, a process killed and Redis flushed mid-sale."""

import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import redis
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.factories import make_event
from tests.fan_client import FanClient
from tests.stack import wait_for
from ticketing.models import Event
from waitlist import services
from waitlist.models import AccessToken, QueueEntry, WaitingRoom

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def fans_with_api_keys(count: int) -> list[tuple[int, str]]:
    """`count` fan accounts with API tokens, made in bulk: [(fan id, key)]."""
    User = get_user_model()
    tag = secrets.token_hex(4)
    users = User.objects.bulk_create(
        User(username=f"wr-{tag}-{i}@example.com", email=f"wr-{tag}-{i}@example.com", password="!")
        for i in range(count)
    )
    tokens = Token.objects.bulk_create(Token(user=u, key=secrets.token_hex(20)) for u in users)
    return [(t.user_id, t.key) for t in tokens]


def api_client(base_url: str, key: str) -> FanClient:
    fan = FanClient(base_url)
    fan.token = key
    return fan


def join_all(base_url: str, event_id: int, fans: list[tuple[int, str]], *, threads: int = 12) -> list[int]:
    """Join the line for every fan over HTTP, `threads` at a time; returns the status codes in fan order."""
    local = threading.local()
    path = f"/api/v1/events/{event_id}/queue/"

    def join(fan: tuple[int, str]) -> int:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base_url, timeout=30)
        return local.http.post(path, headers={"Authorization": f"Token {fan[1]}"}).status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(join, fans))


def a_paused_line(*, tickets: int = 10, max_per_order: int = 4) -> Event:
    """An on-sale event whose line is open (fans get numbers as they join) but admits nobody yet."""
    event = make_event(tickets=tickets, max_per_order=max_per_order)
    WaitingRoom.objects.filter(event=event).update(paused=True, opened_at=timezone.now())
    return event


def is_admitted(status: dict) -> bool:
    return status["status"] == "admitted"


def test_the_pre_queue_is_shuffled_once_at_on_sale_and_later_fans_follow_in_join_order(stack):
    event = make_event(tickets=10, on_sale_in=3600)
    early, late = fans_with_api_keys(1000), fans_with_api_keys(1000)

    assert set(join_all(stack.base_url, event.pk, early)) == {201}
    assert not QueueEntry.objects.filter(event=event, number__isnull=False).exists()
    sample = api_client(stack.base_url, early[0][1]).queue_status(event.pk)
    assert sample["status"] == "waiting" and sample["position"] is None and sample["ahead"] is None

    # The sale opens: the running stack's admission tick shuffles the pre-queue.
    Event.objects.filter(pk=event.pk).update(on_sale_at=timezone.now())
    wait_for(lambda: WaitingRoom.objects.get(event=event).opened_at, timeout=15, what="the sale to open")
    assert join_all(stack.base_url, event.pk, late, threads=1) == [201] * 1000  # one at a time: a defined order

    numbers = dict(QueueEntry.objects.filter(event=event).values_list("fan_id", "number"))
    early_numbers = [numbers[fan_id] for fan_id, _ in early]
    late_numbers = [numbers[fan_id] for fan_id, _ in late]
    assert None not in numbers.values() and len(set(numbers.values())) == 2000
    assert sorted(early_numbers) == list(range(1, 1001)), "the pre-queue holds the first 1000 places"
    assert early_numbers != sorted(early_numbers), "the pre-queue is not served in join order"
    assert min(late_numbers) > max(early_numbers)
    assert late_numbers == sorted(late_numbers), "after on-sale: first come, first served"

    # The stored seed reproduces the order (audit), and the shuffle ran once.
    room = WaitingRoom.objects.get(event=event)
    assert room.pre_queue_size == 1000 and room.shuffle_seed
    entry_ids = dict(QueueEntry.objects.filter(event=event).values_list("fan_id", "id"))
    by_join = sorted(entry_ids[fan_id] for fan_id, _ in early)
    random.Random(room.shuffle_seed).shuffle(by_join)
    by_number = dict(QueueEntry.objects.filter(event=event).values_list("id", "number"))
    assert [by_number[i] for i in by_join] == list(range(1, 1001))

    # What fans are shown agrees: a unique position each, counted from the serving number.
    serving = WaitingRoom.objects.get(event=event).serving_number
    for fan_id, key in random.sample(early + late, 20):
        status = api_client(stack.base_url, key).queue_status(event.pk)
        number = QueueEntry.objects.get(event=event, fan_id=fan_id).number
        if status["status"] == "waiting":
            assert status["position"] <= number - serving, status
            assert status["ahead"] == status["position"] - 1


def test_twenty_concurrent_joins_by_one_fan_make_one_place(stack):
    event = make_event(tickets=10)
    ((fan_id, key),) = fans_with_api_keys(1)
    barrier = threading.Barrier(20)

    def join() -> httpx.Response:
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            barrier.wait()
            return http.post(f"/api/v1/events/{event.pk}/queue/", headers={"Authorization": f"Token {key}"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: join(), range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert QueueEntry.objects.filter(event=event, fan_id=fan_id).count() == 1
    assert len({r.json()["event"] for r in responses}) == 1


def test_two_admitters_racing_admit_each_fan_once():
    event = a_paused_line(tickets=20)
    for fan_id, _ in fans_with_api_keys(50):
        services.join_queue(event=event, fan=get_user_model()(pk=fan_id))
    WaitingRoom.objects.filter(event=event).update(paused=False)
    barrier = threading.Barrier(4)

    def admit() -> int:
        from django.db import connection

        try:
            barrier.wait()
            return services.admit_fans(event_id=event.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: admit(), range(4)))
    # Each admitted fan takes at least one ticket, so 20 tickets admit 20 fans.
    # (The session's running stack may tick in too: one more admitter.)
    assert sum(counts) <= 20
    admitted = QueueEntry.objects.filter(event=event, state=QueueEntry.State.ADMITTED)
    assert admitted.count() == 20
    assert set(admitted.values_list("number", flat=True)) == set(range(1, 21)), "in line order"
    assert AccessToken.objects.filter(event=event).count() == 20
    assert not AccessToken.objects.filter(event=event).values("entry").annotate(n=Count("id")).filter(n__gt=1)
    assert WaitingRoom.objects.get(event=event).serving_number == 20


def test_admitted_fans_who_never_book_make_way_for_the_next_fans(stack):
    event = a_paused_line(tickets=3)
    fans = fans_with_api_keys(6)
    assert join_all(stack.base_url, event.pk, fans, threads=1) == [201] * 6
    WaitingRoom.objects.filter(event=event).update(paused=False)

    first, second = fans[:3], fans[3:]
    admitted = [api_client(stack.base_url, key).stream_until(event.pk, is_admitted, timeout=15)[1] for _, key in first]
    assert all(s["access_token"] for s in admitted)
    # Three tickets, three admitted: the rest wait, nobody books.
    time.sleep(2)
    assert [api_client(stack.base_url, key).queue_status(event.pk)["status"] for _, key in second] == ["waiting"] * 3

    # The tokens run out (as if their five minutes, and the clock-skew
    # leeway, had passed); the same number of next fans get theirs.
    AccessToken.objects.filter(event=event).update(expires_at=timezone.now() - timedelta(minutes=1))
    for _, key in second:
        _, status = api_client(stack.base_url, key).stream_until(event.pk, is_admitted, timeout=20)
        assert status["access_token"]
    for _, key in first:
        assert api_client(stack.base_url, key).queue_status(event.pk)["status"] == "expired"
    tokens = AccessToken.objects.filter(event=event)
    assert tokens.count() == 6 and not tokens.filter(used_at__isnull=False).exists()
    assert set(tokens.values_list("fan_id", flat=True)) == {fan_id for fan_id, _ in fans}
    refused = api_client(stack.base_url, first[0][1]).book(event.pk, 1, admitted[0]["access_token"])
    assert refused.status_code == 403 and refused.json()["error"] == "token_expired"


def test_the_checkout_limit_admits_only_as_many_fans_as_may_be_booking_at_once(stack, local_stripe):
    event = a_paused_line(tickets=20)
    fans = fans_with_api_keys(6)
    assert join_all(stack.base_url, event.pk, fans, threads=1) == [201] * 6
    WaitingRoom.objects.filter(event=event).update(paused=False, checkout_limit=2)

    clients = [api_client(stack.base_url, key) for _, key in fans]
    first = clients[0].stream_until(event.pk, is_admitted, timeout=15)[1]
    wait_for(lambda: clients[1].queue_status(event.pk)["status"] == "admitted", timeout=10, what="the second fan in")
    time.sleep(2.5)  # two admission ticks: tickets are left, but two fans are already choosing
    assert [c.queue_status(event.pk)["status"] for c in clients[2:]] == ["waiting"] * 4
    assert AccessToken.objects.filter(event=event).count() == 2

    # The first fan books: their place at checkout goes to the next in line.
    assert clients[0].book(event.pk, 1, first["access_token"]).status_code == 201
    _, third = clients[2].stream_until(event.pk, is_admitted, timeout=10)
    assert third["access_token"]
    time.sleep(2.5)
    assert [c.queue_status(event.pk)["status"] for c in clients[3:]] == ["waiting"] * 3

    # No limit: everyone the tickets allow is admitted.
    WaitingRoom.objects.filter(event=event).update(checkout_limit=0)
    for client in clients[3:]:
        assert client.stream_until(event.pk, is_admitted, timeout=10)[1]["access_token"]
    entries = QueueEntry.objects.filter(event=event).order_by("number")
    assert [e.fan_id for e in entries if e.state != QueueEntry.State.WAITING] == [fan_id for fan_id, _ in fans]


def test_a_sell_out_closes_the_line_at_once_and_returned_tickets_reopen_it_in_order(stack, local_stripe):
    from bookings.services import refund_booking

    event = a_paused_line(tickets=2, max_per_order=2)
    buyer = FanClient(stack.base_url)
    buyer.sign_up()
    assert buyer.join(event.pk).status_code == 201
    others = fans_with_api_keys(2)
    assert join_all(stack.base_url, event.pk, others, threads=1) == [201, 201]
    WaitingRoom.objects.filter(event=event).update(paused=False)
    _, status = buyer.stream_until(event.pk, is_admitted, timeout=15)
    # Two tickets: the buyer and the next fan are admitted, the third waits.
    last = api_client(stack.base_url, others[1][1])
    wait_for(
        lambda: api_client(stack.base_url, others[0][1]).queue_status(event.pk)["status"] == "admitted",
        timeout=10,
        what="the second fan admitted",
    )
    assert last.queue_status(event.pk)["status"] == "waiting"

    seen: list[str] = []
    watcher_result: list = []

    def watch() -> None:
        def reopened(s: dict) -> bool:
            seen.append(s["status"])
            return s["status"] == "admitted" and "closed" in seen

        watcher_result.append(last.stream_until(event.pk, reopened, timeout=40))

    watcher = threading.Thread(target=watch)
    watcher.start()
    booking = buyer.book(event.pk, 2, status["access_token"]).json()
    assert booking["status"] == "processing"
    assert last.queue_status(event.pk)["status"] == "waiting", "tickets held, not sold: the line stays open"
    buyer.log_in_to_site()
    assert buyer.pay_on_pay_page(booking["pay_url"], "4242424242424242").status_code == 302
    assert buyer.wait_for_booking(booking["id"], "succeeded")["status"] == "succeeded"

    # Sold out: the waiting fan is told at once, and nobody new gets in line.
    wait_for(lambda: "closed" in seen, timeout=3, what=f"the waiting fan told `closed` (saw {seen})")
    assert last.queue_status(event.pk)["status"] == "closed"
    admitted_too_late = api_client(stack.base_url, others[0][1]).queue_status(event.pk)
    assert admitted_too_late["status"] == "closed" and admitted_too_late["access_token"] is None
    newcomer = api_client(stack.base_url, fans_with_api_keys(1)[0][1])
    refused = newcomer.join(event.pk)
    assert refused.status_code == 409 and refused.json()["error"] == "sold_out"
    assert not QueueEntry.objects.filter(event=event, fan__auth_token__key=newcomer.token).exists()

    # Staff refund the buyer and put the tickets back: the line reopens where it was.
    refund_booking(booking_id=booking["id"], return_tickets=True, staff_email="staff@example.com")
    watcher.join(45)
    frames, final = watcher_result[0]
    assert final["access_token"], seen
    assert seen[0] == "waiting" and seen[-1] == "admitted"
    assert QueueEntry.objects.get(event=event, fan_id=others[1][0]).state == QueueEntry.State.ADMITTED


def test_two_asgi_processes_each_fan_gets_its_token(stack_factory):
    running = stack_factory()
    other = running.add_web("web2")
    event = a_paused_line(tickets=10)
    fans = fans_with_api_keys(2)
    assert join_all(running.base_url, event.pk, fans, threads=1) == [201, 201]

    results: dict[str, dict] = {}

    def watch(base_url: str, key: str) -> None:
        results[base_url] = api_client(base_url, key).stream_until(event.pk, is_admitted, timeout=20)

    watchers = [
        threading.Thread(target=watch, args=(running.base_url, fans[0][1])),
        threading.Thread(target=watch, args=(other, fans[1][1])),
    ]
    for w in watchers:
        w.start()
    time.sleep(1)  # both streams open and waiting
    WaitingRoom.objects.filter(event=event).update(paused=False)
    for w in watchers:
        w.join(30)
    for base_url in (running.base_url, other):
        frames, status = results[base_url]
        assert frames[0]["status"]["status"] == "waiting", frames
        assert status["access_token"] and status["token_expires_at"]
    assert AccessToken.objects.filter(event=event).count() == 2


def test_fans_of_a_killed_process_reconnect_to_another_without_losing_their_place_and_redis_flush(stack_factory):
    running = stack_factory()
    survivor = running.add_web("web2")
    event = a_paused_line(tickets=3)
    fans = fans_with_api_keys(8)
    assert join_all(running.base_url, event.pk, fans, threads=1) == [201] * 8

    # Every fan watches the line on the first process.
    last_frames: dict[str, dict] = {}
    opened = threading.Barrier(len(fans) + 1)

    def watch(key: str) -> None:
        fan = api_client(running.base_url, key)
        headers = {**fan.auth, "Accept": "text/event-stream"}
        try:
            with fan.http.stream("GET", f"/api/v1/events/{event.pk}/queue/stream/", headers=headers) as response:
                frame: dict = {}
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        frame["id"] = line[3:].strip()
                    elif line.startswith("data:"):
                        frame["data"] = line[5:].strip()
                    elif line == "" and "data" in frame:
                        first = key not in last_frames
                        last_frames[key] = frame
                        frame = {}
                        if first:
                            opened.wait()
        except httpx.HTTPError:
            pass  # the process died under the stream

    watchers = [threading.Thread(target=watch, args=(key,)) for _, key in fans]
    for w in watchers:
        w.start()
    opened.wait(timeout=20)
    before = {key: httpx.Response(200, content=f["data"]).json() for key, f in last_frames.items()}
    assert sorted(s["position"] for s in before.values()) == list(range(1, 9))

    running.processes["web"].kill()
    for w in watchers:
        w.join(10)
        assert not w.is_alive(), "the stream did not end with its server"
    # Redis loses everything: pending tasks, channel-layer state, the cache.
    redis.Redis.from_url(running.env["REDIS_URL"]).flushdb()

    # Each fan comes back to the other process where it left off.
    for key, frame in last_frames.items():
        frames, status = api_client(survivor, key).stream_until(
            event.pk, lambda s: True, timeout=10, last_event_id=frame["id"]
        )
        assert int(frames[0]["id"]) > int(frame["id"])
        assert status["status"] == "waiting" and status["position"] <= before[key]["position"]
    numbers = dict(QueueEntry.objects.filter(event=event).values_list("fan_id", "number"))
    assert sorted(numbers.values()) == list(range(1, 9))

    # Admission resumes after the flush (the tick is the safety net), in line order.
    WaitingRoom.objects.filter(event=event).update(paused=False)
    first_in_line = next(key for key, s in before.items() if s["position"] == 1)
    _, status = api_client(survivor, first_in_line).stream_until(event.pk, is_admitted, timeout=20)
    assert status["access_token"]
    admitted = QueueEntry.objects.filter(event=event, state=QueueEntry.State.ADMITTED)
    wait_for(lambda: admitted.count() == 3, timeout=10, what="three fans admitted")
    assert set(admitted.values_list("number", flat=True)) == {1, 2, 3}


def test_the_eta_comes_from_the_measured_admission_rate_and_is_never_negative():
    from waitlist.selectors import eta_seconds, find_place, place_status

    event = a_paused_line(tickets=100)
    fans = fans_with_api_keys(30)
    User = get_user_model()
    for fan_id, _ in fans:
        services.join_queue(event=event, fan=User(pk=fan_id))
    assert eta_seconds(position=5, rate=0.0) is None, "no rate measured yet: no promise"
    room = WaitingRoom.objects.filter(event=event)
    room.update(paused=False, admissions_per_minute=120)  # 2 a second
    services.admit_fans(event_id=event.pk)
    time.sleep(1.0)
    services.admit_fans(event_id=event.pk)

    # (The session's running stack may admit too: read one snapshot.)
    place = find_place(event_id=event.pk, fan_id=fans[-1][0])
    status = place_status(place)
    assert place.rate > 0 and status["status"] == "waiting"
    assert status["eta_seconds"] == eta_seconds(position=status["position"], rate=place.rate) > 0
    assert eta_seconds(position=1, rate=place.rate) == 0 and eta_seconds(position=1, rate=0.001) == 0
