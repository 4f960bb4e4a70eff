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
