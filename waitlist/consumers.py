"""The waiting room's live connection: Server-Sent Events over Channels.

Each connection keeps its fan's queue number and gets the room's news from
its process's hub (waitlist.live). From a broadcast of the serving number it
works out the fan's new position without touching the database; it reads
Postgres only on connect, when its fan is reached, on news about its fan,
and when a token runs out. Fans far back in a long line see their position
move at most every SSE_FAR_POSITION_SECONDS (settings say why); their turn,
a pause and a close reach them at once.

Writes never block the hub's loop over connections: each frame is sent by a
short task, and a client too slow to take it gets only the latest status
once it catches up (heartbeats are skipped while a frame is pending).
"""

import asyncio
import json
import logging
import random
import time

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from django.conf import settings
from django.utils.dateparse import parse_datetime

from waitlist.live import hub
from waitlist.models import QueueEntry
from waitlist.selectors import place_status, waiting_position
from waitlist.stream_reads import find_place

log = logging.getLogger(__name__)

# A stream that cannot read Postgres: the client comes back after Retry-After.
BUSY_DETAIL = "Your place is safe; the live view could not load. Retrying."

WAITING = QueueEntry.State.WAITING
ADMITTED = QueueEntry.State.ADMITTED


class QueueStreamConsumer(AsyncConsumer):
    # The hub carries this connection's news, so it needs no channel (and no
    # Redis subscription) of its own: an alias with no layer gives none.
    channel_layer_alias = "waitlist.stream.no-channel"

    async def dispatch(self, message):
        # Channels closes stale ORM connections on its database thread before
        # every message; this consumer reads through its own pool instead
        # (waitlist.stream_reads), so the hop would buy nothing.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is not None:
            await handler(message)

    async def http_request(self, message):
        if message.get("more_body"):
            return
        if self.scope.get("method") not in ("GET", "HEAD"):
            await self._refuse(405, "method_not_allowed", "The stream is read with GET.")
            return
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(401, "not_authenticated", "Log in or send an API token.")
            return
        self.event_id = int(self.scope["url_route"]["kwargs"]["event_id"])
        self.fan_id = user.pk
        try:
            place = await find_place(event_id=self.event_id, fan_id=self.fan_id)
        except Exception:  # noqa: BLE001 - the database is down or overloaded; the client retries
            log.warning("stream for fan %s could not read its place", self.fan_id, exc_info=True)
            await self._refuse(503, "busy", BUSY_DETAIL, retry=True)
            return
        if place is None:
            await self._refuse(404, "not_in_queue", "You are not in line for this event.")
            return
        self.number, self.state = place.number, place.state
        self.status = place_status(place)
        self.shown_at = time.monotonic()
        self.last_id = self._last_event_id()
        self.writer: asyncio.Task | None = None
        self.queued: str | None = None
        self.reloading = False
        self.reload_again = False
        self.expiry_timer: asyncio.TimerHandle | None = None
        # A move up not shown yet (fan far back), and the timer that shows it.
        self.held_move: dict | None = None
        self.held_timer: asyncio.TimerHandle | None = None
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache, no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        # Jittered reconnect hint: after a server restart, clients come back
        # spread over a few seconds instead of all at once.
        retry = settings.SSE_RETRY_MS + random.randint(0, settings.SSE_RETRY_MS)
        await self._send_text(f"retry: {retry}\n\n" + self._status_frame())
        self.live = True
        await hub().add(self)
        self._watch_token_expiry()

    async def http_disconnect(self, message):
        if hasattr(self, "live"):  # the stream was open
            self.live = False
            for timer in (self.expiry_timer, self.held_timer):
                if timer:
                    timer.cancel()
            await hub().remove(self)
        raise StopConsumer()

    # ------------------------------------------------------------ news from the hub

    def on_room_news(self, news: dict) -> None:
        if self.state == ADMITTED and news.get("closed") != (self.status["status"] == "closed"):
            self._reload_soon()  # a token that can buy nothing now (or again)
            return
        if self.state != WAITING:
            return
        if news.get("closed"):
            if self.status["status"] != "closed":
                self._show({**self.status, "status": "closed", "position": None, "ahead": None, "eta_seconds": None})
            return
        if self.number is None:
            if news.get("opened"):
                self._reload_soon()  # the pre-queue was numbered: ours is in Postgres
            return
        if self.number <= news["serving"]:
            self._reload_soon()  # our turn: the token is in Postgres
            return
        fields = waiting_position(
            number=self.number, serving=news["serving"], rate=news.get("rate") or 0.0, paused=news.get("paused", False)
        )
        shown = self.status
        # Reopened after a sell-out, moved up, paused or resumed; never shown moving back.
        if shown["status"] != "waiting" or shown["position"] is None:
            self._show({**shown, "status": "waiting", **fields})
            return
        moved_up = fields["position"] < shown["position"]
        if fields["paused"] != shown.get("paused"):  # shown at once, wherever the fan is
            self._show({**shown, **(fields if moved_up else {k: fields[k] for k in ("paused", "eta_seconds")})})
        elif moved_up:
            if self._position_due(fields):
                self._show({**shown, **fields})
            else:
                self._hold_move(fields)

    def _position_due(self, fields: dict) -> bool:
        """Whether a move up is shown now: at once near the front, at most every
        SSE_FAR_POSITION_SECONDS further back."""
        if fields["position"] <= settings.SSE_NEAR_POSITIONS:
            return True
        eta = fields["eta_seconds"]
        if eta is not None and eta <= settings.SSE_NEAR_ETA_SECONDS:
            return True
        return time.monotonic() - self.shown_at >= settings.SSE_FAR_POSITION_SECONDS

    def on_fan_news(self) -> None:
        self._reload_soon()

    def on_heartbeat(self) -> None:
        if self.writer is None:
            self._push(": keep-alive\n\n")

    # ------------------------------------------------------------ internals

    def _reload_soon(self) -> None:
        if self.reloading:
            self.reload_again = True
            return
        self.reloading = True
        asyncio.ensure_future(self._reload())

    async def _reload(self) -> None:
        try:
            while self.live:
                self.reload_again = False
                try:
                    place = await find_place(event_id=self.event_id, fan_id=self.fan_id)
                except Exception:  # noqa: BLE001 - try again shortly; the screen keeps its last status
                    log.warning("stream for fan %s could not reload", self.fan_id, exc_info=True)
                    asyncio.get_running_loop().call_later(1 + random.random() * 2, self._reload_soon)
                    break
                if place is None:  # left the line (from another tab or device)
                    self.number, self.state = None, QueueEntry.State.LEFT
                    status = {**self.status, "status": "closed", "position": None, "ahead": None}
                    status.update(eta_seconds=None, access_token=None, token_expires_at=None)
                else:
                    self.number, self.state = place.number, place.state
                    status = place_status(place)
                if status != self.status:
                    self._show(status)
                self._watch_token_expiry()
                if not self.reload_again:
                    break
        finally:
            self.reloading = False

    def _watch_token_expiry(self) -> None:
        # Re-read when the token runs out, so the fan sees `expired` live.
        if self.expiry_timer:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if not self.live or self.status["status"] != "admitted" or not self.status.get("token_expires_at"):
            return
        delay = parse_datetime(self.status["token_expires_at"]).timestamp() - time.time() + 0.5
        self.expiry_timer = asyncio.get_running_loop().call_later(max(delay, 0), self._reload_soon)

    def _hold_move(self, fields: dict) -> None:
        # Shown when due even if no more news comes (the line stopped).
        self.held_move = fields
        if self.held_timer is None:
            due = self.shown_at + settings.SSE_FAR_POSITION_SECONDS - time.monotonic()
            self.held_timer = asyncio.get_running_loop().call_later(max(due, 0), self._show_held_move)

    def _show_held_move(self) -> None:
        self.held_timer = None
        fields, self.held_move = self.held_move, None
        shown = self.status
        if not (fields and self.live and self.state == WAITING and shown["status"] == "waiting"):
            return
        if shown["position"] is not None and fields["position"] < shown["position"]:
            # A pause shown since the move was held keeps its own flag and ETA.
            same_pause = fields["paused"] == shown.get("paused")
            self._show({**shown, **(fields if same_pause else {k: fields[k] for k in ("position", "ahead")})})

    def _show(self, status: dict) -> None:
        self.status = status
        self.shown_at = time.monotonic()
        if self.held_timer is not None:
            # A move still ahead of this frame (one that only paused, say)
            # waits a full interval from it; any other is now shown or moot.
            self.held_timer.cancel()
            self.held_timer = None
            held, self.held_move = self.held_move, None
            if held and status.get("position") is not None and held["position"] < status["position"]:
                self._hold_move(held)
        self._push(self._status_frame())

    def _push(self, text: str) -> None:
        if not self.live:
            return
        if self.writer is not None:
            self.queued = text  # only the latest status matters to a slow client
            return
        self.writer = asyncio.ensure_future(self._drain(text))

    async def _drain(self, text: str | None) -> None:
        try:
            while text is not None and self.live:
                await self._send_text(text)
                text, self.queued = self.queued, None
        except Exception:  # noqa: BLE001 - the client went away mid-write; http.disconnect follows
            self.live = False
        finally:
            self.writer = None

    def _status_frame(self) -> str:
        self.last_id = max(self.last_id + 1, int(time.time() * 1000))
        return f"id: {self.last_id}\nevent: status\ndata: {json.dumps(self.status, separators=(',', ':'))}\n\n"

    def _last_event_id(self) -> int:
        for name, value in self.scope.get("headers", []):
            if name == b"last-event-id":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    async def _send_text(self, text: str) -> None:
        await self.send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def _refuse(self, status: int, code: str, detail: str, *, retry: bool = False):
        await refuse_stream(self.send, status, code, detail, retry=retry)
        raise StopConsumer()


async def refuse_stream(send, status: int, code: str, detail: str, *, retry: bool = False) -> None:
    """Answer a stream request with the API's JSON error instead of events.

    With `retry`, a Retry-After of 1-3 s, jittered so refused clients do not
    all come back in the same second.
    """
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json")]
    if retry:
        headers.append((b"retry-after", str(random.randint(1, 3)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
