"""Admission control for Django's HTTP requests in one ASGI process.

Django's views are synchronous: under uvicorn each request in flight gets a
thread of its own, and every thread waits for one of the few pooled
database connections. At an on-sale's opening thousands arrive in the same
second; unbounded, they become thousands of threads fighting over the GIL,
requests that wait out the pool's timeout and fail with a 500. Here at most
WEB_CONCURRENCY requests run at once per process; a few hundred more may
wait briefly for a slot, and the rest are answered at once with a 503 and
a Retry-After, which clients (and the simulator) honour. The waiting
room's live streams do not pass through here: they hold no thread.
"""

import asyncio
import json
import logging
import random
import re

log = logging.getLogger(__name__)


# Fans who already hold tickets (booking, paying) and Stripe's webhooks must
# not queue behind the crowd still joining the line: they get a lane of
# their own, with its own slots.
CHECKOUT = re.compile(r"^/(api/v1/bookings/|bookings/|payments/|events/\d+/book/$)")


class Lanes:
    """Route each request to the checkout lane or the general one."""

    def __init__(self, app, **limits):
        self.checkout = LoadShedding(app, **limits)
        self.general = LoadShedding(app, **limits)

    async def __call__(self, scope, receive, send):
        lane = self.checkout if CHECKOUT.match(scope.get("path", "")) else self.general
        return await lane(scope, receive, send)


class LoadShedding:
    def __init__(self, app, *, concurrency: int, queue: int, wait_seconds: float):
        self.app = app
        self.concurrency = concurrency
        self.max_waiting = queue
        self.wait_seconds = wait_seconds
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            return await self.app(scope, receive, send)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._slots.locked() and self.waiting >= self.max_waiting:
            return await self._busy(send)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds)
        except TimeoutError:
            return await self._busy(send)
        finally:
            self.waiting -= 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self._slots.release()

    async def _busy(self, send) -> None:
        # Spread the retries so a crowd turned away together does not return together.
        retry_after = str(random.randint(1, 3))
        body = json.dumps(
            {"error": "busy", "detail": "We are taking a lot of requests right now; please try again in a moment."}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry_after.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
