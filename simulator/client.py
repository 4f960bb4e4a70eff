"""HTTP for the crowd: one aiohttp session per server, every response metered.

No Django here: this runs in the crowd's processes, which only know the
public URLs. The meter keeps what the report needs (requests per second,
latencies by call, errors by status and code) as plain picklable data.
"""

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import aiohttp

# Transport failures count as errors of their own kind, then the call is
# retried: a browser's fetch would be retried by the fan pressing again.
TRANSPORT_RETRIES = 2
RATE_LIMIT_RETRIES = 60  # a browser keeps coming back while the line is busy
# A fan who gets an error page tries again; calls that are safe to repeat
# (GETs, joining the line, Stripe's) are retried this many times on a 5xx.
SERVER_ERROR_RETRIES = 2


@dataclass
class Meter:
    # "server" (the product) or "stripe" -> requests made.
    requests: Counter = field(default_factory=Counter)
    # "POST /api/v1/bookings/ -> 409 not_enough_tickets" -> count.
    errors: Counter = field(default_factory=Counter)
    # call name -> latencies in seconds (successful responses only).
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    # whole epoch second -> requests to the product server that ended in it.
    server_per_second: Counter = field(default_factory=Counter)
    # epoch seconds at which a booking was created (201).
    bookings_created: list = field(default_factory=list)

    def merge(self, other: "Meter") -> None:
        self.requests.update(other.requests)
        self.errors.update(other.errors)
        for name, values in other.latencies.items():
            self.latencies[name].extend(values)
        self.server_per_second.update(other.server_per_second)
        self.bookings_created.extend(other.bookings_created)

    def as_dict(self) -> dict:
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "latencies": dict(self.latencies),
            "server_per_second": dict(self.server_per_second),
            "bookings_created": self.bookings_created,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Meter":
        meter = cls()
        meter.requests.update(data["requests"])
        meter.errors.update(data["errors"])
        for name, values in data["latencies"].items():
            meter.latencies[name].extend(values)
        meter.server_per_second.update(data["server_per_second"])
        meter.bookings_created.extend(data["bookings_created"])
        return meter


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (transport failure after retries)
    body: dict
    code: str  # the error code ("" on success)


def error_code(target: str, body: object) -> str:
    """API.md errors are {"error": "<code>"}; Stripe's are {"error": {"code"|"type"}}."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if target == "stripe" and isinstance(error, dict):
        return str(error.get("code") or error.get("type") or "")
    return str(error or "")


KEEPALIVE_SECONDS = 4.0


class Client:
    def __init__(self, *, target: str, base_url: str, meter: Meter, headers: dict | None = None):
        self.target = target
        self.base_url = base_url.rstrip("/")
        self.meter = meter
        # Connections are limited by the crowd's own semaphore, not the pool.
        # Idle connections are dropped before the server's keep-alive (5 s)
        # would close them: reusing one just as the server closes it fails a
        # request that never reached the server (a browser would resend it).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=60),
            headers=headers or {},
        )

    async def close(self) -> None:
        await self.session.close()

    def record(self, *, route: str, status: int, code: str, started: float) -> None:
        ended = time.time()
        self.meter.requests[self.target] += 1
        if self.target == "server":
            self.meter.server_per_second[int(ended)] += 1
        if status >= 400 or status == 0:
            self.meter.errors[f"{self.target} {route} -> {status or 'transport'} {code}".rstrip()] += 1
        else:
            self.meter.latencies[route].append(ended - started)

    async def call(self, method: str, path: str, *, route: str, retry_5xx: bool = True, **kwargs) -> Answer:
        """One logical call: retried on 429 (after Retry-After), on transport
        failures and, unless `retry_5xx` is off, on server errors."""
        transport_failures = 0
        rate_limited = 0
        server_errors = 0
        while True:
            started = time.time()
            try:
                async with self.session.request(method, self.base_url + path, **kwargs) as response:
                    try:
                        body = await response.json(content_type=None)
                    except ValueError:
                        body = {}
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.record(route=route, status=0, code=type(exc).__name__, started=started)
                transport_failures += 1
                if transport_failures > TRANSPORT_RETRIES:
                    return Answer(0, {}, type(exc).__name__)
                await asyncio.sleep(0.5 * transport_failures)
                continue
            code = error_code(self.target, body)
            self.record(route=route, status=status, code=code, started=started)
            # Told to come back (rate limited, or the server shedding load): as a browser would.
            if (status == 429 or (status == 503 and code == "busy")) and rate_limited < RATE_LIMIT_RETRIES:
                rate_limited += 1
                await asyncio.sleep(float(retry_after or 1))
                continue
            if status >= 500 and retry_5xx and server_errors < SERVER_ERROR_RETRIES and code != "payment_unavailable":
                server_errors += 1
                await asyncio.sleep(1.0 * server_errors)
                continue
            return Answer(status, body if isinstance(body, dict) else {"items": body}, code)
