"""How quickly checkout answers: measured by the web processes, read by the admitter.

A token is an invitation to book now. Admitting fans faster than checkout
can serve them turns a thousand tokens into a thousand booking requests in
line, each waiting seconds. The admitter paces itself by how quickly
checkout has been answering (waitlist.pacing), so the waiting happens in the
line, where it is shown and costs nothing.

Each web process counts, per wall-clock second, its checkout requests and
those slower than CHECKOUT_SLOW_SECONDS from the whole request body on
(waiting for a slot included; see config.load_shedding) to the last byte of
the answer, and adds the counts to Redis about twice a second: one round
trip per process, not one per request.
Counts lost with Redis make a second look quiet, never busier than it was.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

import redis
import redis.asyncio
from django.conf import settings

from config.redis_pool import SharedConnectionPool

log = logging.getLogger(__name__)

KEY = "checkout_load:{}"
# Long enough for any reader; the counts are only ever read a few seconds back.
KEEP_SECONDS = 60
FLUSH_SECONDS = 0.5


@dataclass(frozen=True)
class CheckoutLoad:
    requests: int
    slow: int

    @property
    def slow_share(self) -> float:
        return self.slow / self.requests if self.requests else 0.0


class CheckoutMeter:
    """Counts one process's checkout requests per second; flushes them to Redis."""

    def __init__(self):
        self._counts: dict[int, list[int]] = {}  # epoch second -> [requests, slow]
        self._flusher: asyncio.Task | None = None
        self._client: redis.asyncio.Redis | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def record(self, *, seconds: float) -> None:
        counts = self._counts.setdefault(int(time.time()), [0, 0])
        counts[0] += 1
        if seconds > settings.CHECKOUT_SLOW_SECONDS:
            counts[1] += 1
        if self._flusher is None or self._flusher.done():
            # One flush for everything recorded until it runs; none while idle.
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        counts, self._counts = self._counts, {}
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for second, (requests, slow) in counts.items():
                    key = KEY.format(second)
                    pipe.hincrby(key, "requests", requests)
                    pipe.hincrby(key, "slow", slow)
                    pipe.expire(key, KEEP_SECONDS)
                await pipe.execute()
        except (redis.RedisError, OSError):
            log.warning("could not record checkout load", exc_info=True)

    def _redis(self) -> redis.asyncio.Redis:
        # A client's connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            self._client_loop = loop
        return self._client


def recent_checkout_load(*, seconds: int, now: float | None = None) -> CheckoutLoad:
    """Checkout's requests, all processes together, over the `seconds` whole seconds before this one."""
    current = int(time.time() if now is None else now)
    client = redis.Redis(connection_pool=SharedConnectionPool.from_url(settings.REDIS_URL))
    try:
        pipe = client.pipeline(transaction=False)
        for second in range(current - seconds, current):
            pipe.hmget(KEY.format(second), "requests", "slow")
        rows = pipe.execute()
    except (redis.RedisError, OSError):
        log.warning("could not read checkout load", exc_info=True)
        return CheckoutLoad(requests=0, slow=0)
    return CheckoutLoad(
        requests=sum(int(requests or 0) for requests, _ in rows),
        slow=sum(int(slow or 0) for _, slow in rows),
    )
