"""News about the waiting room, pushed after commit.

One message per event carries the serving number to every ASGI process
(pub/sub channel layer); each SSE connection works out its own fan's status.
Admitted fans learn it from the serving number (their connection then reads
the token); news about one fan (joined, left, booked) goes to that fan's own
group. Losing any of these delays a fan's screen, never their place: the
tick and the snapshot on reconnect read Postgres.
"""

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def room_group(event_id: int) -> str:
    return f"room.{event_id}"


def fan_group(event_id: int, fan_id: int) -> str:
    return f"fan.{event_id}.{fan_id}"


def room_update(*, event_id: int, serving: int, rate: float = 0.0, closed: bool = False) -> None:
    # Sent by the admitter, so the sale is open ("opened": pre-queue fans
    # now have numbers). The ids in the body let one subscriber per process
    # route the message to its connections (waitlist.live).
    _send(
        room_group(event_id),
        {
            "type": "room.update",
            "event": event_id,
            "serving": serving,
            "rate": rate,
            "opened": True,
            "paused": False,
            "closed": closed,
        },
    )


def room_changed(*, event_id: int) -> None:
    """Staff changed the room (paused it, say): send its state as read from Postgres."""
    from waitlist.selectors import room_news

    news = room_news(event_id=event_id)
    if news is not None:
        _send(room_group(event_id), {"type": "room.update", **news})


def fan_changed(*, event_id: int, fan_id: int) -> None:
    _send(fan_group(event_id, fan_id), {"type": "fan.changed", "event": event_id, "fan": fan_id})


def wake_admitter(*, event_id: int, after: float = 0.0) -> None:
    from waitlist.tasks import admit_fans_task

    try:
        admit_fans_task.apply_async(args=[event_id], countdown=after or None)
    except Exception:  # broker down: the periodic tick admits instead
        log.warning("could not wake the admitter for event %s", event_id, exc_info=True)


# When each event's admitter is next due to run for bookings, in this process.
_checkout_wake_due: dict[int, float] = {}
# Bookings arrive by the hundred a second at an on-sale: one admitter run per
# process in this interval lets in the next fans for all of them.
CHECKOUT_WAKE_INTERVAL = 0.25


def checkout_place_freed(*, event_id: int) -> None:
    """A fan spent their token: a place under the room's checkout limit is free.

    The first booking wakes the admitter at once; bookings within the next
    interval share one more run at its end, so a freed place never waits for
    the periodic tick.
    """
    now = time.monotonic()
    due = _checkout_wake_due.get(event_id)
    if due is not None and due > now - CHECKOUT_WAKE_INTERVAL:
        if due > now:
            return  # a run is due after this booking: it counts this one too
        after = max(0.0, due + CHECKOUT_WAKE_INTERVAL - now)
    else:
        after = 0.0
    _checkout_wake_due[event_id] = now + after
    wake_admitter(event_id=event_id, after=after)


def _send(group: str, message: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except Exception:  # Redis down: clients catch up from the snapshot
        log.warning("could not publish to %s", group, exc_info=True)
