"""Room news reaches an event's streams at most once per SSE_ROOM_NEWS_SECONDS."""

import asyncio

from waitlist.live import Hub


class Screen:
    def __init__(self, event_id: int):
        self.event_id = event_id
        self.fan_id = 1
        self.seen: list[tuple[float, dict]] = []

    def on_room_news(self, news: dict) -> None:
        self.seen.append((asyncio.get_running_loop().time(), news))


def news(serving: int, **extra) -> dict:
    return {"type": "room.update", "event": 7, "serving": serving, "rate": 1.0, "opened": False, **extra}


def test_room_news_is_handed_out_at_once_then_at_most_once_per_interval(settings):
    settings.SSE_ROOM_NEWS_SECONDS = 0.2

    async def main() -> tuple[Screen, Screen, float]:
        hub = Hub()  # never started: news is fed to it directly
        watching, other_event = Screen(7), Screen(8)
        hub._by_event[7].add(watching)
        hub._by_event[8].add(other_event)
        began = asyncio.get_running_loop().time()
        hub._deliver(news(10))
        hub._deliver(news(30, opened=True))  # these three arrive within the interval
        hub._deliver(news(40))
        hub._deliver(news(20, paused=True))  # late, from another process
        await asyncio.sleep(0.5)
        return watching, other_event, began

    watching, other_event, began = asyncio.run(main())
    assert [n["serving"] for _, n in watching.seen] == [10, 40]
    assert watching.seen[0][0] - began < 0.05, "the first news goes out at once"
    assert 0.15 < watching.seen[1][0] - watching.seen[0][0] < 0.4
    # The latest wins, but the line never moves back and the sale stays opened.
    assert watching.seen[1][1]["opened"] is True and watching.seen[1][1]["paused"] is True
    assert other_event.seen == []


def test_bookings_wake_the_admitter_at_once_then_once_at_the_end_of_each_interval(monkeypatch):
    from waitlist import broadcast

    clock = [100.0]
    wakes: list[tuple[float, float]] = []
    monkeypatch.setattr(broadcast.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(broadcast, "wake_admitter", lambda *, event_id, after=0.0: wakes.append((clock[0], after)))
    monkeypatch.setattr(broadcast, "_checkout_wake_due", {})
    for at in (100.0, 100.1, 100.2, 100.3, 101.0):
        clock[0] = at
        broadcast.checkout_place_freed(event_id=7)
    # Run times: 100.0 at once; 100.25 for the bookings at .1 and .2; 100.5 for .3; 101.0 at once.
    assert [round(at + after, 2) for at, after in wakes] == [100.0, 100.25, 100.5, 101.0]


def far_and_near_screens(monkeypatch, clock: list[float]):
    """Live connections with their frames captured, numbers 5000 and 50, serving 0."""
    from waitlist import consumers
    from waitlist.models import QueueEntry
    from waitlist.selectors import waiting_position

    monkeypatch.setattr(consumers.time, "monotonic", lambda: clock[0])

    def screen(number: int):
        conn = consumers.QueueStreamConsumer()
        conn.event_id, conn.fan_id, conn.number, conn.state = 7, number, number, QueueEntry.State.WAITING
        conn.status = {"status": "waiting", **waiting_position(number=number, serving=0, rate=0.0)}
        conn.shown_at, conn.last_id, conn.live, conn.writer, conn.queued = clock[0], 0, True, None, None
        conn.held_move, conn.held_timer = None, None
        conn.frames = []

        async def send_text(text):
            conn.frames.append(text)

        conn._send_text = send_text
        conn._reload_soon = lambda: conn.frames.append("reload")
        return conn

    return screen(5000), screen(50)


def positions(conn) -> list:
    import json

    return [json.loads(f.split("data: ")[1])["position"] if f != "reload" else f for f in conn.frames]


def test_far_back_fans_see_a_move_at_most_every_interval_and_near_fans_every_move(monkeypatch, settings):
    settings.SSE_FAR_POSITION_SECONDS = 5.0
    settings.SSE_NEAR_POSITIONS = 100
    settings.SSE_NEAR_ETA_SECONDS = 60
    clock = [1000.0]

    async def main():
        far, near = far_and_near_screens(monkeypatch, clock)
        for at, serving, rate in [(1001, 10, 1.0), (1002, 20, 1.0), (1005, 30, 1.0), (1006, 40, 1.0), (1007, 45, 1.0)]:
            clock[0] = at
            for conn in (far, near):
                conn.on_room_news({"event": 7, "serving": serving, "rate": rate})
            await asyncio.sleep(0)
        # The line speeds up: the far fan's turn is now within a minute, so every move shows.
        for at, serving in [(1008, 100), (1008.5, 200)]:
            clock[0] = at
            far.on_room_news({"event": 7, "serving": serving, "rate": 100.0})
            await asyncio.sleep(0)
        near.on_room_news({"event": 7, "serving": 50, "rate": 1.0})  # the near fan's turn
        await asyncio.sleep(0)
        return far, near

    far, near = asyncio.run(main())
    # Held back at 1001 and 1002 (under 5 s since the last frame), shown at 1005; 1006-1007 held back.
    assert positions(far)[:1] == [4970]
    assert positions(far)[1:] == [4900, 4800], "within a minute of their turn a fan sees every move"
    assert positions(near) == [40, 30, 20, 10, 5, "reload"]


def test_a_pause_reaches_a_far_back_fan_at_once(monkeypatch, settings):
    settings.SSE_FAR_POSITION_SECONDS = 5.0
    clock = [1000.0]

    async def main():
        far, _ = far_and_near_screens(monkeypatch, clock)
        clock[0] = 1001
        far.on_room_news({"event": 7, "serving": 10, "rate": 1.0, "paused": True})
        await asyncio.sleep(0)
        clock[0] = 1002
        far.on_room_news({"event": 7, "serving": 10, "rate": 1.0, "paused": False})
        await asyncio.sleep(0)
        return far

    far = asyncio.run(main())
    import json

    shown = [json.loads(f.split("data: ")[1]) for f in far.frames]
    assert [(s["paused"], s["position"], s["eta_seconds"]) for s in shown] == [(True, 4990, None), (False, 4990, 4989)]


def test_a_held_back_move_is_shown_when_due_even_if_the_line_stops(monkeypatch, settings):
    settings.SSE_FAR_POSITION_SECONDS = 5.0
    clock = [1000.0]  # the event loop's clock too: its timers fire as it moves

    async def main():
        far, _ = far_and_near_screens(monkeypatch, clock)
        clock[0] = 1001
        far.on_room_news({"event": 7, "serving": 10, "rate": 1.0})  # the last news: the line stops
        clock[0] = 1002
        far.on_room_news({"event": 7, "serving": 12, "rate": 1.0})
        for at in (1003, 1004.9):
            clock[0] = at
            await asyncio.sleep(0)
        before_due = list(far.frames)
        clock[0] = 1005.01
        for _ in range(3):
            await asyncio.sleep(0)
        return far, before_due

    far, before_due = asyncio.run(main())
    assert before_due == []
    assert positions(far) == [4988], "the latest held move, once 5 s after the last frame"
