"""The waiting room's live connection: Server-Sent Events over Channels.

Each connection keeps its fan's queue number. A room broadcast carries the
serving number, from which the connection works out the fan's new position
without touching the database; it reads Postgres only on connect, when its
fan is reached, on a personal message, and when a token runs out.
"""

import asyncio
import json
import random
import time

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.conf import settings

from ticketing.models import Event
from waitlist.broadcast import fan_group, room_group
from waitlist.models import QueueEntry
from waitlist.selectors import eta_seconds, get_entry, queue_status


@database_sync_to_async
def load_place(*, event_id: int, user) -> tuple[dict, int | None, str] | None:
    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        return None
    entry = get_entry(event=event, fan=user)
    if entry is None:
        return None
    return queue_status(entry=entry), entry.number, entry.state


class QueueStreamConsumer(AsyncConsumer):
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
        self.user = user
        place = await load_place(event_id=self.event_id, user=user)
        if place is None:
            await self._refuse(404, "not_in_queue", "You are not in line for this event.")
            return
        self.status, self.number, self.state = place
        self.last_id = self._last_event_id()
        self.expiry_timer = None
        self.groups = [room_group(self.event_id), fan_group(self.event_id, user.pk)]
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
        await self._write(f"retry: {retry}\n\n" + self._status_frame())
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.heartbeat = asyncio.ensure_future(self._heartbeat())
        self._watch_token_expiry()

    async def room_update(self, message):
        if self.state != QueueEntry.State.WAITING:
            return
        if self.number is None or message.get("closed"):
            # Pre-queue fans learn their number once the sale opens; waiting
            # fans learn the line closed. Both are in Postgres.
            await self._reload()
            return
        serving = message["serving"]
        if self.number <= serving:
            await self._reload()  # our turn: the token is in Postgres
            return
        position = self.number - serving
        if position < (self.status["position"] or position + 1):
            self.status = {
                **self.status,
                "position": position,
                "ahead": position - 1,
                "eta_seconds": eta_seconds(position=position, rate=message.get("rate") or 0.0),
            }
            await self._write(self._status_frame())

    async def fan_changed(self, message):
        await self._reload()

    async def token_expired(self, message):
        await self._reload()

    async def http_disconnect(self, message):
        if hasattr(self, "heartbeat"):
            self.heartbeat.cancel()
            if self.expiry_timer:
                self.expiry_timer.cancel()
            for group in self.groups:
                await self.channel_layer.group_discard(group, self.channel_name)
        raise StopConsumer()

    async def _reload(self):
        place = await load_place(event_id=self.event_id, user=self.user)
        if place is None:
            status = {**self.status, "status": "closed", "position": None, "ahead": None, "access_token": None}
            number, state = None, QueueEntry.State.LEFT
        else:
            status, number, state = place
        self.number, self.state = number, state
        if status != self.status:
            self.status = status
            await self._write(self._status_frame())
        self._watch_token_expiry()

    def _watch_token_expiry(self):
        # Re-read when the token runs out, so the fan sees `expired` live.
        if self.expiry_timer:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if self.status["status"] != "admitted" or not self.status.get("token_expires_at"):
            return
        from django.utils.dateparse import parse_datetime

        delay = parse_datetime(self.status["token_expires_at"]).timestamp() - time.time() + 0.5
        loop = asyncio.get_running_loop()
        self.expiry_timer = loop.call_later(
            max(delay, 0), lambda: asyncio.ensure_future(self.token_expired({"type": "token.expired"}))
        )

    async def _heartbeat(self):
        while True:
            await asyncio.sleep(settings.SSE_HEARTBEAT_SECONDS)
            await self._write(": keep-alive\n\n")

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

    async def _write(self, text: str):
        await self.send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def _refuse(self, status: int, code: str, detail: str):
        body = json.dumps({"error": code, "detail": detail}).encode()
        await self.send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await self.send({"type": "http.response.body", "body": body})
        raise StopConsumer()
