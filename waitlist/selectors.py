"""A fan's place in line, as API.md's QueueStatus.

Everything a QueueStatus says comes from one query (PLACE_SQL), so the
status endpoint, the waiting-room page and a live connection opening or
catching up all cost a single round trip; `place_status` turns those facts
into the status without touching the database. The live stream runs the
same queries from the event loop (waitlist.stream_reads).
"""

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from ticketing.errors import NotFound
from ticketing.models import Event
from waitlist.models import QueueEntry
from waitlist.tokens import sign_token


@dataclass(frozen=True)
class Place:
    """The facts behind one fan's QueueStatus, read together."""

    event_id: int
    fan_id: int
    number: int | None
    state: str
    serving: int
    rate: float
    paused: bool
    sale_closed: bool
    starts_at: datetime
    on_sale_at: datetime
    available: int
    held: int
    # The fan's latest access token, if they were ever admitted.
    token_id: uuid.UUID | None
    token_expires_at: datetime | None
    token_used: bool

    def line_closed(self, now: datetime) -> bool:
        """Sold out (nothing available, nothing held) or the sale is over: API.md's `closed`."""
        if self.sale_closed or self.starts_at <= now:
            return True
        return now >= self.on_sale_at and self.available == 0 and self.held == 0


PLACE_SQL = """
SELECT q.number, q.state, r.serving_number, r.admission_rate, r.paused,
       e.sale_closed, e.starts_at, e.on_sale_at, inv.available, inv.held,
       t.id, t.expires_at, t.used_at IS NOT NULL
FROM waitlist_queueentry q
JOIN ticketing_event e ON e.id = q.event_id
JOIN waitlist_waitingroom r ON r.event_id = q.event_id
CROSS JOIN LATERAL (
    SELECT coalesce(sum(b.available), 0), coalesce(sum(b.held), 0)
    FROM ticketing_inventorybucket b WHERE b.event_id = q.event_id
) AS inv(available, held)
LEFT JOIN LATERAL (
    SELECT id, expires_at, used_at FROM waitlist_accesstoken
    WHERE entry_id = q.id ORDER BY issued_at DESC LIMIT 1
) AS t ON true
WHERE q.event_id = %s AND q.fan_id = %s AND q.state <> 'left'
"""


def find_place(*, event_id: int, fan_id: int) -> Place | None:
    """The fan's live place in this event's line (None if not in line), in one query."""
    with connection.cursor() as cursor:
        cursor.execute(PLACE_SQL, [event_id, fan_id])
        row = cursor.fetchone()
    if row is None:
        return None
    return Place(event_id, fan_id, *row)


def get_entry(*, event: Event, fan) -> QueueEntry | None:
    return QueueEntry.objects.filter(event=event, fan=fan).exclude(state=QueueEntry.State.LEFT).first()


def queue_status(*, entry: QueueEntry) -> dict:
    """The QueueStatus of API.md for a live entry, read from Postgres."""
    place = find_place(event_id=entry.event_id, fan_id=entry.fan_id)
    if place is None:  # left the line since `entry` was read
        raise NotFound("You are not in line for this event.", code="not_in_queue")
    return place_status(place)


def place_status(place: Place, *, now: datetime | None = None) -> dict:
    """QueueStatus from a Place; pure, so a live connection can recompute it cheaply."""
    now = now or timezone.now()
    status = {
        "event": place.event_id,
        "status": "waiting",
        "position": None,
        "ahead": None,
        "eta_seconds": None,
        "access_token": None,
        "token_expires_at": None,
        "stream_url": reverse("queue-stream", kwargs={"event_id": place.event_id}),
        # Staff paused admission: places hold, nobody moves, no ETA.
        "paused": place.paused,
    }
    if place.state in (QueueEntry.State.ADMITTED, QueueEntry.State.BOOKED):
        if place.token_id is None:
            return status
        if place.token_used or place.state == QueueEntry.State.BOOKED:
            status["status"] = "booked"
        elif place.token_expires_at <= now:
            status["status"] = "expired"
        elif place.line_closed(now):  # sold out or sale closed: the token can buy nothing
            status["status"] = "closed"
        else:
            status["status"] = "admitted"
            status["access_token"] = sign_token(token_id=place.token_id, event_id=place.event_id, fan_id=place.fan_id)
            status["token_expires_at"] = place.token_expires_at.isoformat()
        return status
    if place.line_closed(now):
        status["status"] = "closed"
        return status
    if place.number is not None:
        status.update(
            waiting_position(number=place.number, serving=place.serving, rate=place.rate, paused=place.paused)
        )
    return status


def waiting_position(*, number: int, serving: int, rate: float, paused: bool = False) -> dict:
    """The position fields of a waiting fan whose queue number is `number`."""
    position = max(number - serving, 1)
    eta = None if paused else eta_seconds(position=position, rate=rate)
    return {"position": position, "ahead": position - 1, "eta_seconds": eta, "paused": paused}


def eta_seconds(*, position: int, rate: float) -> int | None:
    """Seconds until this position is admitted at the measured rate; None until measured."""
    if rate <= 0:
        return None
    return max(0, math.ceil((position - 1) / rate))


ROOM_NEWS_SQL = """
SELECT r.serving_number, r.admission_rate, r.opened_at IS NOT NULL, r.paused,
       e.sale_closed OR e.starts_at <= now()
       OR (e.on_sale_at <= now() AND NOT EXISTS (
           SELECT 1 FROM ticketing_inventorybucket b WHERE b.event_id = e.id AND (b.available > 0 OR b.held > 0)))
FROM waitlist_waitingroom r JOIN ticketing_event e ON e.id = r.event_id
WHERE r.event_id = %s
"""


def room_news(*, event_id: int) -> dict | None:
    """What a room broadcast carries, read from Postgres (for a connection catching up on lost news)."""
    with connection.cursor() as cursor:
        cursor.execute(ROOM_NEWS_SQL, [event_id])
        row = cursor.fetchone()
    return None if row is None else room_news_from_row(event_id, row)


def room_news_from_row(event_id: int, row: tuple) -> dict:
    serving, rate, opened, paused, closed = row
    return {"event": event_id, "serving": serving, "rate": rate, "opened": opened, "paused": paused, "closed": closed}
