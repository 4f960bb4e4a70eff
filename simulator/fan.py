"""One simulated fan's way through the on-sale, over the public interface only.

Join the waiting room, read the live stream until admitted (reconnecting
with Last-Event-ID like a browser's EventSource), book, then pay, get
declined, walk away, or pay too late, as the fan's plan says. Every time
worth reporting is taken on the fan's side of the wire.
"""

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from simulator.client import Client, Meter
from simulator.plan import DECLINED_CARD, GOOD_CARD, Behaviour, FanPlan
from simulator.stripe_js import pay_with_card

# Booking statuses after which nothing more happens without the fan.
FINAL = {"succeeded", "failed", "expired", "cancelled", "refunded"}
# How long a fan waits for the webhook to move its booking after paying.
CONFIRM_TIMEOUT = 60.0
# The booking page polls every 2 s while the webhook has not moved the booking.
POLL_SECONDS = 2.0
# The stream sends a comment at least every 20 s (API.md): silence past this
# means the connection is dead, so reconnect.
STREAM_SILENCE = 45.0
STREAM_ROUTE = "GET /api/v1/events/{id}/queue/stream/"


@dataclass
class Progress:
    """Counts for the progress line and the chart, per crowd process."""

    waiting: int = 0  # in line now
    admitted: int = 0  # ever given a token
    booked: int = 0  # bookings created
    paid: int = 0  # bookings seen succeeded
    done: int = 0  # fans finished

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FanResult:
    index: int
    behaviour: str
    early: bool
    quantity_wanted: int
    quantity_booked: int = 0
    outcome: str = ""
    booking_id: int | None = None
    final_status: str = ""
    t_arrive: float | None = None
    t_joined: float | None = None
    t_token: float | None = None
    t_booked: float | None = None
    t_paid: float | None = None
    stream_connects: int = 0
    stream_frames: int = 0
    last_event_id: str | None = None


@dataclass
class FanContext:
    server: Client
    stripe: Client
    meter: Meter
    progress: Progress
    event_id: int
    slots: asyncio.Semaphore
    max_wait: float


async def run_fan(ctx: FanContext, plan: FanPlan) -> FanResult:
    result = FanResult(index=plan.index, behaviour=str(plan.behaviour), early=plan.early, quantity_wanted=plan.quantity)
    await asyncio.sleep(max(0.0, plan.arrive_at - time.time()))
    result.t_arrive = time.time()
    auth = {"Authorization": f"Token {plan.api_token}"}
    try:
        # A slot is a fan with a connection open: the stream, then the booking
        # and payment calls. Abandoners and late payers give it back while
        # they sit out their hold.
        async with ctx.slots:
            booking = await _get_tickets(ctx, plan, result, auth)
            if booking is not None and plan.behaviour in (Behaviour.PAY, Behaviour.DECLINE):
                await _pay_now(ctx, plan, result, auth, booking)
        if booking is not None and plan.behaviour == Behaviour.ABANDON:
            await _abandon(ctx, result, auth, booking)
        if booking is not None and plan.behaviour == Behaviour.LATE_PAY:
            await _pay_late(ctx, plan, result, auth, booking)
    except Exception as exc:  # noqa: BLE001 - one fan's bug must not stop the crowd; it is reported
        ctx.meter.errors[f"client exception {type(exc).__name__}: {str(exc)[:80]}"] += 1
        result.outcome = result.outcome or f"error:client {type(exc).__name__}"
    ctx.progress.done += 1
    return result


async def _get_tickets(ctx: FanContext, plan: FanPlan, result: FanResult, auth: dict) -> dict | None:
    """Join, wait for the token, book. Returns the booking, or None with result.outcome set."""
    pressed_join = time.time()  # join -> token is what the fan waits, the join request included
    joined = await ctx.server.call(
        "POST", f"/api/v1/events/{ctx.event_id}/queue/", route="POST /api/v1/events/{id}/queue/", headers=auth
    )
    if joined.status == 409:
        result.outcome = "sold_out_at_join"
        return None
    if joined.status not in (200, 201):
        result.outcome = f"error:join {joined.status or 'transport'} {joined.code}".rstrip()
        return None
    result.t_joined = pressed_join
    ctx.progress.waiting += 1
    try:
        status = await _wait_for_token(ctx, result, auth, first=joined.body)
    finally:
        ctx.progress.waiting -= 1
    if status is None:
        result.outcome = "gave_up"
        return None
    if status["status"] == "closed":
        result.outcome = "closed_in_line"
        return None
    if status["status"] != "admitted":
        result.outcome = f"error:stream ended {status['status']}"
        return None
    result.t_token = time.time()
    ctx.progress.admitted += 1
    return await _book(ctx, plan, result, auth, status)


async def _read_frames(response: aiohttp.ClientResponse, result: FanResult) -> dict | None:
    """Read `event: status` frames until one settles the wait; None if the stream ends first."""
    frame: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                frame[name] = value[1:] if value.startswith(" ") else value
            continue
        if "data" in frame:
            result.last_event_id = frame.get("id", result.last_event_id)
            status = json.loads(frame["data"])
            result.stream_frames += 1
            if _settled(status):
                return status
        frame = {}
    return None


def _settled(status: dict) -> bool:
    """A stream status that ends the wait: a token, or no more chance of one."""
    if status.get("status") == "admitted":
        return bool(status.get("access_token"))
    return status.get("status") in ("closed", "booked", "expired")


async def _wait_for_token(ctx: FanContext, result: FanResult, auth: dict, *, first: dict) -> dict | None:
    """Read the live stream until admitted or closed; None after max_wait."""
    if _settled(first):
        return first
    url = f"{ctx.server.base_url}/api/v1/events/{ctx.event_id}/queue/stream/"
    deadline = time.time() + ctx.max_wait
    failures = 0
    while time.time() < deadline:
        headers = {**auth, "Accept": "text/event-stream"}
        if result.last_event_id:
            headers["Last-Event-ID"] = result.last_event_id
        started = time.time()
        result.stream_connects += 1
        try:
            async with asyncio.timeout(deadline - time.time()):
                async with ctx.server.session.get(
                    url,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=STREAM_SILENCE),
                ) as response:
                    if response.status != 200:
                        # An overloaded server may answer in plain text: keep the status.
                        try:
                            body = json.loads(await response.text())
                        except ValueError:
                            body = {}
                        code = str(body.get("error", "")) if isinstance(body, dict) else ""
                        ctx.server.record(route=STREAM_ROUTE, status=response.status, code=code, started=started)
                        if response.status < 500:
                            return None
                    else:
                        ctx.server.record(route=STREAM_ROUTE, status=200, code="", started=started)
                        status = await _read_frames(response, result)
                        if status is not None:
                            return status
        except TimeoutError:
            if time.time() >= deadline:
                return None
            ctx.server.record(route="GET stream (silent)", status=0, code="TimeoutError", started=started)
        except (aiohttp.ClientError, ValueError) as exc:
            ctx.server.record(route="GET stream (dropped)", status=0, code=type(exc).__name__, started=started)
        # EventSource reconnects after the server's retry hint (3-6 s); a
        # little sooner here, jittered so a dropped crowd does not return at once.
        failures += 1
        await asyncio.sleep(min(5.0, 0.5 * failures) + random.random())
    return None


async def _book(ctx: FanContext, plan: FanPlan, result: FanResult, auth: dict, admission: dict) -> dict | None:
    quantity = plan.quantity
    unavailable = 0
    server_errors = 0
    while True:
        answer = await ctx.server.call(
            "POST",
            "/api/v1/bookings/",
            route="POST /api/v1/bookings/",
            retry_5xx=False,  # not idempotent: handled below
            headers=auth,
            json={"event": ctx.event_id, "quantity": quantity, "access_token": admission["access_token"]},
        )
        booking = answer.body if answer.status == 201 else None
        if answer.status == 403 and answer.code == "token_used" and server_errors:
            # The attempt that failed may have booked after all: look in "my bookings".
            booking = await _latest_hold(ctx, auth)
        if booking is not None:
            ctx.meter.bookings_created.append(time.time())
            result.t_booked = time.time()
            result.quantity_booked = booking["quantity"]
            result.booking_id = booking["id"]
            result.final_status = booking["status"]
            ctx.progress.booked += 1
            return booking
        if answer.status == 409 and answer.code == "not_enough_tickets":
            quantity = await _wait_for_tickets(ctx, plan, auth, admission)
            if quantity:
                continue
            result.outcome = "no_tickets"
            return None
        if answer.status == 503 and answer.code == "payment_unavailable" and unavailable < 3:
            unavailable += 1  # the hold was released and the token is still good (API.md)
            await asyncio.sleep(1.0)
            continue
        if (answer.status >= 500 or answer.status == 0) and server_errors < 2:
            server_errors += 1  # the fan presses "book" again
            await asyncio.sleep(1.0 * server_errors)
            continue
        result.outcome = f"error:book {answer.status or 'transport'} {answer.code}".rstrip()
        await _leave(ctx, auth)
        return None


async def _latest_hold(ctx: FanContext, auth: dict) -> dict | None:
    answer = await ctx.server.call("GET", "/api/v1/bookings/", route="GET /api/v1/bookings/", headers=auth)
    mine = [b for b in answer.body.get("items", []) if b.get("event") == ctx.event_id] if answer.status == 200 else []
    return mine[0] if mine else None


async def _leave(ctx: FanContext, auth: dict) -> None:
    """Leave the line (the page's Leave button). An unused live token counts
    against admission, so a fan who silently gives up keeps the next fans
    out until the token expires; the crowd's fans leave when they give up."""
    await ctx.server.call(
        "DELETE", f"/api/v1/events/{ctx.event_id}/queue/", route="DELETE /api/v1/events/{id}/queue/", headers=auth
    )


async def _wait_for_tickets(ctx: FanContext, plan: FanPlan, auth: dict, admission: dict) -> int:
    """Told there are not enough tickets: ask for what is left, or wait for
    holds to come back while the token lasts. Returns the quantity to try, or
    0 after leaving the line (sold out, or the token is about to run out).
    """
    token_left = _seconds_until(admission["token_expires_at"]) if admission.get("token_expires_at") else 0.0
    deadline = time.time() + token_left - 3.0
    while time.time() < deadline:
        event = await ctx.server.call(
            "GET", f"/api/v1/events/{ctx.event_id}/", route="GET /api/v1/events/{id}/", headers=auth
        )
        if event.status == 200 and event.body.get("status") in ("sold_out", "closed"):
            break
        if event.status == 200 and event.body.get("available", 0) > 0:
            return min(plan.quantity, event.body["available"])
        await asyncio.sleep(2.0 + random.random())
    await _leave(ctx, auth)
    return 0


async def _booking(ctx: FanContext, auth: dict, booking_id: int) -> dict:
    answer = await ctx.server.call(
        "GET", f"/api/v1/bookings/{booking_id}/", route="GET /api/v1/bookings/{id}/", headers=auth
    )
    return answer.body if answer.status == 200 else {}


async def _await_booking(ctx: FanContext, auth: dict, booking_id: int, *, until: set[str], timeout: float) -> dict:
    """Poll the booking, as its page does, until its status is in `until`."""
    deadline = time.time() + timeout
    while True:
        booking = await _booking(ctx, auth, booking_id)
        if booking.get("status") in until or time.time() > deadline:
            return booking
        await asyncio.sleep(POLL_SECONDS)


async def _pay_now(ctx: FanContext, plan: FanPlan, result: FanResult, auth: dict, booking: dict) -> None:
    card = GOOD_CARD if plan.behaviour == Behaviour.PAY else DECLINED_CARD
    paid = await pay_with_card(stripe=ctx.stripe, payment=booking["payment"], card_number=card)
    if plan.behaviour == Behaviour.PAY and paid.status != 200:
        result.outcome = f"error:stripe {paid.status or 'transport'} {paid.code}".rstrip()
        return
    final = await _await_booking(ctx, auth, booking["id"], until=FINAL, timeout=CONFIRM_TIMEOUT)
    result.final_status = final.get("status", "")
    if result.final_status == "succeeded":
        result.t_paid = time.time()
        ctx.progress.paid += 1
    expected = "succeeded" if plan.behaviour == Behaviour.PAY else "failed"
    if result.final_status == expected:
        result.outcome = "paid" if plan.behaviour == Behaviour.PAY else "declined"
    else:
        result.outcome = f"error:{plan.behaviour} ended {result.final_status or 'unknown'}"


def _seconds_until(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() - time.time()


async def _abandon(ctx: FanContext, result: FanResult, auth: dict, booking: dict) -> None:
    """Walk away; come back after the hold's end to see what became of it."""
    await asyncio.sleep(max(0.0, _seconds_until(booking["expires_at"])) + 1.0)
    final = await _await_booking(ctx, auth, booking["id"], until=FINAL, timeout=60.0)
    result.final_status = final.get("status", "")
    result.outcome = "expired" if result.final_status == "expired" else f"error:abandon ended {result.final_status}"


async def _pay_late(ctx: FanContext, plan: FanPlan, result: FanResult, auth: dict, booking: dict) -> None:
    """Pay just after the hold's end: Stripe takes the money only if the
    server has not cancelled the intent yet; the server then keeps the
    tickets if the pool still has them, else refunds."""
    await asyncio.sleep(max(0.0, _seconds_until(booking["expires_at"])) + plan.late_delay)
    paid = await pay_with_card(stripe=ctx.stripe, payment=booking["payment"], card_number=GOOD_CARD)
    if paid.status != 200:
        final = await _booking(ctx, auth, booking["id"])
        result.final_status = final.get("status", "")
        result.outcome = "late_refused"
        return
    final = await _await_booking(ctx, auth, booking["id"], until={"succeeded", "refunded"}, timeout=CONFIRM_TIMEOUT)
    result.final_status = final.get("status", "")
    if result.final_status == "succeeded":
        result.t_paid = time.time()
        ctx.progress.paid += 1
        result.outcome = "late_paid"
    elif result.final_status == "refunded":
        result.outcome = "late_refunded"
    else:
        result.outcome = f"error:late_pay ended {result.final_status or 'unknown'}"
