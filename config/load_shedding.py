"""Admission control for Django's HTTP requests in one ASGI process.

Django's views are synchronous: under uvicorn each request in flight gets a
thread of its own, and every thread waits for one of the few pooled
database connections. At an on-sale's opening thousands arrive in the same
second; unbounded, they become thousands of threads fighting over the GIL,
requests that wait out the pool's timeout and fail with a 500. Here each
lane (webhooks, checkout, the rest) runs at most its number of requests at
once per process (WEB_CONCURRENCY; WEB_GENERAL_CONCURRENCY for the rest);
more may wait briefly for a slot as coroutines, and the rest are answered
at once with a 503 and a Retry-After, which clients (and the simulator)
honour. The waiting room's live streams do not pass through here: they hold
no thread.

Each slot also owns the thread its requests' synchronous code runs on. Left
to itself, Django's ASGI handler starts a new thread for every request and
another to join it afterwards; the event loop waits for each to start, so
under load every stream and every request in the process stalls behind
thread start-ups (a fifth of the event loop's time at an on-sale, measured
with py-spy). Threads kept per slot are reused, as a WSGI server's are.
"""

import asyncio
import json
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

log = logging.getLogger(__name__)


# Fans who already hold tickets (booking, paying) must not queue behind the
# crowd still joining the line, and Stripe's webhooks (which anyone can
# send, signed or not) must not crowd out either: each gets a lane of its
# own, with its own slots.
CHECKOUT = re.compile(r"^/(api/v1/bookings/|bookings/|events/\d+/book/$)")
WEBHOOKS = re.compile(r"^/payments/stripe/webhook/")

# A request's body is read in full before it takes a slot, so a client that
# trickles (or never finishes) its body cannot hold one: past this long, 408.
BODY_SECONDS = 10.0
# Bodies larger than this are not buffered here: Django refuses them (413).
BODY_BUFFER_LIMIT = 4 * 1024 * 1024


# Health checks skip the lanes (they must be answered when the lanes are
# full) but still run on kept threads, up to this many at once.
HEALTH_THREADS = 4


class Lanes:
    """Route each request to the webhook, checkout or general lane."""

    def __init__(self, app, *, general_concurrency: int | None = None, checkout_meter=None, **limits):
        self.webhooks = LoadShedding(app, **limits)
        # How quickly checkout answers paces admission (config.checkout_load).
        self.checkout = LoadShedding(app, meter=checkout_meter, **limits)
        # Python threads have no priorities: a lane's share of the process's
        # CPU is its share of the running requests. Fewer slots for the
        # crowd's joins and page views leave checkout more of it.
        general = {**limits, "concurrency": general_concurrency or limits["concurrency"]}
        self.general = LoadShedding(app, **general)
        self.app = app
        self.health_threads = KeptThreads(HEALTH_THREADS, name="health")

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if path == "/healthz":
            return await self.health_threads.run(self.app, scope, receive, send)
        lane = self.webhooks if WEBHOOKS.match(path) else self.checkout if CHECKOUT.match(path) else self.general
        return await lane(scope, receive, send)


class KeptThreads:
    """Long-lived threads for the synchronous part of requests, one request per thread at a time."""

    def __init__(self, count: int, *, name: str):
        self._idle = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-{i}") for i in range(count)]

    async def run(self, app, scope, receive, send):
        if not self._idle:
            # More at once than kept threads (only health checks can be):
            # Django's own thread per request.
            return await app(scope, receive, send)
        executor = self._idle.pop()
        try:
            # The outermost context decides where thread-sensitive code
            # runs: Django's handler, and every sync_to_async inside it, use
            # this executor's one thread.
            async with ThreadSensitiveContext(executor=executor):
                return await app(scope, receive, send)
        finally:
            self._idle.append(executor)


class LoadShedding:
    def __init__(self, app, *, concurrency: int, queue: int, wait_seconds: float, meter=None):
        self.app = app
        self.meter = meter
        self.concurrency = concurrency
        self.max_waiting = queue
        self.wait_seconds = wait_seconds
        self._slots: asyncio.Semaphore | None = None
        self._threads = KeptThreads(concurrency, name="request")
        self.waiting = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            return await self.app(scope, receive, send)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        try:
            received = await asyncio.wait_for(_read_body(receive), BODY_SECONDS)
        except TimeoutError:
            return await _answer(send, 408, "timeout", "The request body did not arrive in time.")
        if self.meter is None:
            return await self._serve(scope, received, receive, send)
        # Timed from the whole body on (the wait for a slot included): a
        # client that trickles its body must not make checkout look slow.
        started = time.monotonic()
        try:
            return await self._serve(scope, received, receive, send)
        finally:
            self.meter.record(seconds=time.monotonic() - started)

    async def _serve(self, scope, received: list[dict], receive, send):
        if self._slots.locked() and self.waiting >= self.max_waiting:
            return await self._busy(send)
        # A client that gives up while waiting for a slot must not get one:
        # once the view is handed to a thread it runs to the end, a join or
        # a booking nobody is waiting for. After the whole body only a
        # disconnect can arrive, so listen for it while waiting.
        whole_body = not received[-1].get("more_body")
        gone = asyncio.ensure_future(receive()) if whole_body and self._slots.locked() else None
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds)
        except TimeoutError:
            return await self._busy(send)
        finally:
            self.waiting -= 1
            if gone is not None and not gone.done():
                gone.cancel()
        try:
            if gone is not None and gone.done():
                message = _message_or_disconnect(gone)
                if message["type"] == "http.disconnect":
                    return None  # nobody is left to answer
                received.append(message)
            return await self._threads.run(self.app, scope, _replay(received, receive), send)
        finally:
            self._slots.release()

    async def _busy(self, send) -> None:
        # Spread the retries so a crowd turned away together does not return together.
        await _answer(
            send,
            503,
            "busy",
            "We are taking a lot of requests right now; please try again in a moment.",
            retry_after=random.randint(1, 3),
        )


async def _read_body(receive) -> list[dict]:
    """The request's messages up to its last body chunk (or up to BODY_BUFFER_LIMIT, or a disconnect)."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages
        size += len(message.get("body", b""))
        if size > BODY_BUFFER_LIMIT:
            return messages


def _message_or_disconnect(listener: asyncio.Future) -> dict:
    """What a finished listener heard; a receive that failed means the client is gone."""
    if listener.cancelled() or listener.exception() is not None:
        return {"type": "http.disconnect"}
    return listener.result()


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed() -> dict:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer(send, status: int, code: str, detail: str, *, retry_after: int | None = None) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
