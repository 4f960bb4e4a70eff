"""Overload is answered with a 503 and Retry-After, never a 500 or an unbounded pile of threads."""

import asyncio
import json

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from config.load_shedding import LoadShedding


def run_requests(shedding: LoadShedding, count: int, *, gap: float = 0.01) -> list[tuple[int, dict, dict]]:
    async def one() -> tuple[int, dict, dict]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await shedding({"type": "http", "path": "/api/v1/events/", "method": "GET"}, receive, send)
        start = sent[0]
        return start["status"], dict(start["headers"]), json.loads(sent[1]["body"] or b"{}")

    async def main():
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(gap)
        return await asyncio.gather(*tasks)

    return asyncio.run(main())


def slow_app(seconds: float):
    async def app(scope, receive, send):
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_requests_beyond_the_queue_are_turned_away_at_once_with_retry_after():
    shedding = LoadShedding(slow_app(0.3), concurrency=1, queue=1, wait_seconds=5)
    results = run_requests(shedding, 3)
    assert [status for status, _, _ in results] == [200, 200, 503]
    status, headers, body = results[2]
    assert body["error"] == "busy" and body["detail"]
    assert 1 <= int(headers[b"retry-after"]) <= 3


def test_a_request_that_waits_too_long_for_a_slot_is_a_503():
    shedding = LoadShedding(slow_app(0.5), concurrency=1, queue=10, wait_seconds=0.1)
    assert [status for status, _, _ in run_requests(shedding, 2)] == [200, 503]


def test_requests_within_the_limits_all_run_in_arrival_order():
    order = []

    async def app(scope, receive, send):
        order.append(len(order))
        await asyncio.sleep(0.02)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    shedding = LoadShedding(app, concurrency=2, queue=50, wait_seconds=5)
    assert [status for status, _, _ in run_requests(shedding, 20, gap=0)] == [200] * 20
    assert order == list(range(20))


@pytest.mark.django_db
def test_a_database_that_cannot_be_reached_in_time_is_a_503_not_a_500(monkeypatch):
    from ticketing import api

    def no_connection(*args, **kwargs):
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(api, "events_with_inventory", no_connection)
    response = APIClient().get("/api/v1/events/1/")
    assert response.status_code == 503
    assert response.json()["error"] == "busy" and response["Retry-After"] == "2"


async def post(lanes, path: str) -> None:
    """An empty POST to `path` through the lanes; the answer is dropped."""

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await lanes({"type": "http", "path": path, "method": "POST"}, receive, send)


def test_fans_at_checkout_do_not_queue_behind_the_crowd_joining_the_line():
    from config.load_shedding import Lanes

    served = []

    async def app(scope, receive, send):
        await asyncio.sleep(0.2)
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = Lanes(app, concurrency=1, queue=100, wait_seconds=30)

    async def main():
        crowd = [asyncio.ensure_future(post(lanes, "/api/v1/events/1/queue/")) for _ in range(5)]
        await asyncio.sleep(0.01)
        await asyncio.wait_for(post(lanes, "/api/v1/bookings/"), 1.0)  # not behind the 5 joins (1 s of work)
        await asyncio.gather(*crowd)

    asyncio.run(main())
    assert served.index("/api/v1/bookings/") <= 1


def test_the_general_lane_runs_fewer_requests_at_once_than_checkout():
    from config.load_shedding import Lanes

    running = {"general": 0, "checkout": 0}
    most = {"general": 0, "checkout": 0}

    async def app(scope, receive, send):
        lane = "checkout" if scope["path"].startswith("/api/v1/bookings/") else "general"
        running[lane] += 1
        most[lane] = max(most[lane], running[lane])
        await asyncio.sleep(0.05)
        running[lane] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = Lanes(app, concurrency=3, general_concurrency=1, queue=100, wait_seconds=30)

    async def main():
        paths = ["/api/v1/events/1/queue/", "/api/v1/bookings/"] * 6
        await asyncio.gather(*(post(lanes, path) for path in paths))

    asyncio.run(main())
    assert most == {"general": 1, "checkout": 3}


def test_a_body_that_never_finishes_is_a_408_and_holds_no_slot(monkeypatch):
    from config import load_shedding

    monkeypatch.setattr(load_shedding, "BODY_SECONDS", 0.3)
    bodies = []

    async def app(scope, receive, send):
        message = await receive()
        bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    shedding = LoadShedding(app, concurrency=1, queue=10, wait_seconds=5)

    async def main():
        answers = {}

        async def request(name, chunks, stall=False):
            pending = list(chunks)

            async def receive():
                if pending:
                    return pending.pop(0)
                await asyncio.sleep(3600 if stall else 0)
                return {"type": "http.disconnect"}

            async def send(message):
                if message["type"] == "http.response.start":
                    answers[name] = message["status"]

            await shedding({"type": "http", "path": "/api/v1/bookings/", "method": "POST"}, receive, send)

        stalled = asyncio.ensure_future(
            request("stalled", [{"type": "http.request", "body": b"{", "more_body": True}], stall=True)
        )
        await asyncio.sleep(0.05)
        chunks = [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.request", "body": b" 1}", "more_body": False},
        ]
        await asyncio.wait_for(request("whole", chunks), 0.2)  # not behind the stalled one
        await stalled
        return answers

    answers = asyncio.run(main())
    assert answers == {"whole": 200, "stalled": 408}
    assert bodies == [b'{"a":'], "the app reads the buffered body as sent"


def test_webhook_floods_do_not_take_the_slots_of_fans_at_checkout():
    from config.load_shedding import Lanes

    lanes = Lanes(slow_app(0.3), concurrency=1, queue=0, wait_seconds=0.1)

    async def main():
        async def post(path):
            statuses = []

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await lanes({"type": "http", "path": path, "method": "POST"}, receive, send)
            return statuses[0]

        flood = [asyncio.ensure_future(post("/payments/stripe/webhook/")) for _ in range(5)]
        await asyncio.sleep(0.01)
        fan = await post("/api/v1/bookings/")
        return fan, await asyncio.gather(*flood)

    fan, flood = asyncio.run(main())
    assert fan == 200
    assert sorted(flood) == [200, 503, 503, 503, 503]


def test_requests_run_on_threads_kept_per_slot_not_a_new_thread_each():
    """Django's handler would start (and join) a thread per request, stalling the event loop each time."""
    import threading

    from asgiref.sync import ThreadSensitiveContext, sync_to_async

    from config.load_shedding import Lanes

    ran_on = {"general": set(), "checkout": set(), "health": set()}

    async def django_like(scope, receive, send):
        # As django.core.handlers.asgi.ASGIHandler does: its own context, views via sync_to_async.
        async with ThreadSensitiveContext():
            path = scope["path"]
            lane = "health" if path == "/healthz" else "checkout" if path.startswith("/api/v1/bookings/") else "general"
            await sync_to_async(lambda: ran_on[lane].add(threading.get_ident()))()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lanes = Lanes(django_like, concurrency=3, general_concurrency=2, queue=100, wait_seconds=30)

    async def main():
        for _ in range(3):
            paths = ["/api/v1/events/1/queue/", "/api/v1/bookings/"] * 10
            await asyncio.gather(*(post(lanes, path) for path in paths))
        for _ in range(5):
            await post(lanes, "/healthz")

    asyncio.run(main())
    # At most one thread per slot, each reused by many requests.
    assert 1 <= len(ran_on["general"]) <= 2
    assert 1 <= len(ran_on["checkout"]) <= 3
    assert len(ran_on["health"]) == 1
    assert not ran_on["general"] & ran_on["checkout"]


def test_a_client_that_leaves_while_waiting_for_a_slot_does_not_get_one():
    """Once a view is on a thread it runs to the end: a join nobody waits for would take a scarce slot."""
    ran = []

    async def app(scope, receive, send):
        ran.append(scope["client"])
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    shedding = LoadShedding(app, concurrency=1, queue=10, wait_seconds=5)

    def request(name: str, *, leaves_after: float | None):
        sent = []
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(leaves_after if leaves_after is not None else 3600)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": "/api/v1/events/1/queue/", "method": "POST", "client": name}
        return shedding(scope, receive, send), sent

    async def main():
        first, first_sent = request("first", leaves_after=None)
        gone, gone_sent = request("gone", leaves_after=0.05)
        stays, stays_sent = request("stays", leaves_after=None)
        tasks = [asyncio.ensure_future(first)]
        await asyncio.sleep(0.01)
        tasks += [asyncio.ensure_future(gone), asyncio.ensure_future(stays)]
        await asyncio.gather(*tasks)
        return first_sent, gone_sent, stays_sent

    first_sent, gone_sent, stays_sent = asyncio.run(main())
    assert ran == ["first", "stays"]
    assert gone_sent == []
    assert first_sent[0]["status"] == stays_sent[0]["status"] == 200
