"""One process's live waiting-room connections, and the news they get.

A process keeps a single channel on the pub/sub channel layer and
subscribes it to each event's room group (while it has a connection for
that event) and to each connected fan's own group. A room broadcast is
deserialised once and handed to every local connection of that event by a
plain loop: each connection works out its fan's position from the serving
number and writes a frame only if it changed. (A Channels consumer per
connection receiving the broadcast itself costs a task wake-up, a message
decode and a database-thread hop each: seconds for 10,000 connections.)

Room news reaches the connections at most once per SSE_ROOM_NEWS_SECONDS
per event (the first at once, then the latest of those that came in
meanwhile): at an on-sale the admitter runs several times a second, and
moving every waiting fan's position on each run would keep the event loop
busy writing frames nobody can read that fast.

The hub also sends the heartbeat comments for all its connections, and
every few seconds re-reads each event's serving number from Postgres, so a
broadcast lost with Redis delays a fan's screen by seconds, never longer.
"""

import asyncio
import logging
import math
import weakref
from collections import defaultdict
from typing import Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from waitlist import stream_reads
from waitlist.broadcast import fan_group, room_group

log = logging.getLogger(__name__)


class Connection(Protocol):
    event_id: int
    fan_id: int

    def on_room_news(self, news: dict) -> None: ...
    def on_fan_news(self) -> None: ...
    def on_heartbeat(self) -> None: ...


class Hub:
    def __init__(self):
        self._layer = get_channel_layer()
        self._channel: str | None = None
        self._by_event: dict[int, set[Connection]] = defaultdict(set)
        self._by_fan: dict[tuple[int, int], set[Connection]] = defaultdict(set)
        self._tasks: list[asyncio.Task] = []
        self._ready = asyncio.Lock()
        # Per event: the room news not yet handed out, when news last was,
        # and the timer that hands out the pending news.
        self._pending_news: dict[int, dict] = {}
        self._news_sent_at: dict[int, float] = {}
        self._news_timer: dict[int, asyncio.TimerHandle] = {}

    async def add(self, conn: Connection) -> None:
        await self._start()
        event_group = not self._by_event[conn.event_id]
        fan_key = (conn.event_id, conn.fan_id)
        personal_group = not self._by_fan[fan_key]
        self._by_event[conn.event_id].add(conn)
        self._by_fan[fan_key].add(conn)
        # Subscriptions can fail with Redis down: the connection is still
        # served, and catches up from the periodic refresh.
        if event_group:
            await self._subscribe(room_group(conn.event_id))
        if personal_group:
            await self._subscribe(fan_group(*fan_key))

    async def remove(self, conn: Connection) -> None:
        fan_key = (conn.event_id, conn.fan_id)
        for index, key, group in (
            (self._by_event, conn.event_id, room_group(conn.event_id)),
            (self._by_fan, fan_key, fan_group(*fan_key)),
        ):
            members = index.get(key)
            if members is None or conn not in members:
                continue
            members.discard(conn)
            if not members:
                del index[key]
                if index is self._by_event:
                    self._forget_room(conn.event_id)
                await self._unsubscribe(group)

    def connections(self, event_id: int) -> int:
        return len(self._by_event.get(event_id, ()))

    # ------------------------------------------------------------ internals

    async def _start(self) -> None:
        if self._channel is not None:
            return
        async with self._ready:
            if self._channel is not None:
                return
            self._channel = await self._layer.new_channel(prefix="waitlist.hub.")
            self._tasks = [
                asyncio.ensure_future(self._receive()),
                asyncio.ensure_future(self._heartbeat()),
                asyncio.ensure_future(self._refresh()),
            ]

    async def _subscribe(self, group: str) -> None:
        try:
            await self._layer.group_add(group, self._channel)
        except Exception:
            log.warning("could not subscribe to %s", group, exc_info=True)

    async def _unsubscribe(self, group: str) -> None:
        try:
            await self._layer.group_discard(group, self._channel)
        except Exception:
            log.warning("could not unsubscribe from %s", group, exc_info=True)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live news receive failed", exc_info=True)
                await asyncio.sleep(1)
                continue
            try:
                self._deliver(message)
            except Exception:
                log.exception("could not deliver %r", message.get("type"))

    def _deliver(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "room.update":
            self._room_news(message)
        elif kind == "fan.changed":
            for conn in list(self._by_fan.get((message["event"], message["fan"]), ())):
                conn.on_fan_news()

    def _room_news(self, news: dict) -> None:
        event_id = news["event"]
        pending = self._pending_news.get(event_id)
        if pending is not None:
            # The latest news wins, but the line never moves back and a sale never un-opens.
            news = {
                **news,
                "serving": max(news["serving"], pending["serving"]),
                "opened": bool(news.get("opened") or pending.get("opened")),
            }
        self._pending_news[event_id] = news
        if event_id in self._news_timer:
            return
        loop = asyncio.get_running_loop()
        wait = self._news_sent_at.get(event_id, -math.inf) + settings.SSE_ROOM_NEWS_SECONDS - loop.time()
        if wait <= 0:
            self._hand_out_news(event_id)
        else:
            self._news_timer[event_id] = loop.call_later(wait, self._hand_out_news, event_id)

    def _hand_out_news(self, event_id: int) -> None:
        self._news_timer.pop(event_id, None)
        news = self._pending_news.pop(event_id, None)
        if news is None:
            return
        self._news_sent_at[event_id] = asyncio.get_running_loop().time()
        for conn in list(self._by_event.get(event_id, ())):
            try:
                conn.on_room_news(news)
            except Exception:
                log.exception("could not show room news to fan %s", conn.fan_id)

    def _forget_room(self, event_id: int) -> None:
        timer = self._news_timer.pop(event_id, None)
        if timer is not None:
            timer.cancel()
        self._pending_news.pop(event_id, None)
        self._news_sent_at.pop(event_id, None)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.SSE_HEARTBEAT_SECONDS)
            for members in list(self._by_event.values()):
                for conn in list(members):
                    conn.on_heartbeat()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(settings.SSE_REFRESH_SECONDS)
            for event_id in list(self._by_event):
                try:
                    news = await stream_reads.room_news(event_id=event_id)
                except Exception:
                    log.warning("could not refresh room %s", event_id, exc_info=True)
                    continue
                if news is not None:
                    self._deliver({"type": "room.update", **news})


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This process's hub (one per event loop)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
