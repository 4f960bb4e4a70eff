"""Joining, leaving and admission: the waiting room's state changes.

Postgres holds every fan's place. Redis (channel layer, broker) only carries
news about it, so every push here happens after commit and may be lost
without harm: the status endpoint and the SSE snapshot read the database.
"""

import logging
import math
import random
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ticketing.errors import Conflict, NotFound
from ticketing.models import Event
from ticketing.selectors import event_inventory, event_status
from waitlist import broadcast
from waitlist.models import AccessToken, QueueEntry, WaitingRoom
from waitlist.pacing import checkout_window

log = logging.getLogger(__name__)


def create_waiting_room(*, event: Event) -> WaitingRoom:
    """Create the room and its number sequence (call inside the event's transaction)."""
    room = WaitingRoom.objects.create(event=event)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {room.sequence_name} MINVALUE 1 START 1")
    return room


def _next_numbers(room: WaitingRoom, count: int) -> list[int]:
    # nextval() is not transactional and takes no row lock: joins do not queue
    # behind each other. A rolled-back join leaves a gap, which only makes a
    # displayed position slightly pessimistic.
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [room.sequence_name, count])
        return [row[0] for row in cursor.fetchall()]


def check_can_join(*, event: Event) -> None:
    inventory = event_inventory(event_id=event.pk)
    status = event_status(event=event, available=inventory.available, held=inventory.held)
    if status == "sold_out":
        raise Conflict("This event is sold out.", code="sold_out")
    if status == "closed":
        raise Conflict("The sale for this event is closed.", code="closed")


def join_queue(*, event: Event, fan) -> tuple[QueueEntry, bool]:
    """Put the fan in line; idempotent. Returns (entry, created).

    A fan whose entry is still live (waiting, admitted, booked with tickets)
    gets it back unchanged. A fan who left, whose token expired unused, or
    whose booking ended without tickets goes to the back of the line.
    The (event, fan) unique constraint makes concurrent joins safe.
    """
    entry = QueueEntry.objects.filter(event=event, fan=fan).first()
    if entry is not None and not turn_is_over(entry):
        return entry, False
    check_can_join(event=event)
    room = WaitingRoom.objects.get(event=event)
    if entry is not None:
        return _requeue(entry=entry, room=room)

    entry = _insert_entry(room=room, fan_id=fan.pk)
    if entry is None:  # a concurrent join by the same fan created the place
        return QueueEntry.objects.get(event=event, fan=fan), False
    if entry.number is not None and entry.number <= room.serving_number + 1:
        # The line was empty ahead of this fan: no need to wait for the tick.
        broadcast.wake_admitter(event_id=event.pk)
    return entry, True


# A first join is the hot write at an on-sale: one round trip, the number
# drawn by the same statement once the sale is open (before, the pre-queue
# is numbered by the shuffle at opening). The (event, fan) unique constraint
# makes concurrent joins create one place; any other conflict still raises.
_INSERT_ENTRY_SQL = """
INSERT INTO waitlist_queueentry (event_id, fan_id, number, state, joined_at)
VALUES (%s, %s, CASE WHEN %s THEN nextval(%s) END, 'waiting', %s)
ON CONFLICT (event_id, fan_id) DO NOTHING
RETURNING {columns}
""".replace("{columns}", ", ".join(field.column for field in QueueEntry._meta.concrete_fields))


def _insert_entry(*, room: WaitingRoom, fan_id: int) -> QueueEntry | None:
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_ENTRY_SQL, [room.event_id, fan_id, room.opened_at is not None, room.sequence_name, timezone.now()]
        )
        row = cursor.fetchone()
    # Built as loaded from the database (not as a new, unsaved instance).
    return None if row is None else QueueEntry.from_db(connection.alias, None, row)


def turn_is_over(entry: QueueEntry) -> bool:
    """Whether the fan may join again: they left, their token ran out
    unused, or their booking ended without tickets."""
    if entry.state == QueueEntry.State.LEFT:
        return True
    if entry.state == QueueEntry.State.ADMITTED:
        return not AccessToken.objects.filter(entry=entry, used_at__isnull=True, expires_at__gt=timezone.now()).exists()
    if entry.state == QueueEntry.State.BOOKED:
        return not QueueEntry.objects.filter(pk=entry.pk).filter(_holds_a_live_booking()).exists()
    return False


def _holds_a_live_booking() -> Q:
    """Entries whose turn became a booking that still holds or has bought its tickets."""
    from bookings.models import Booking

    live = Booking.objects.filter(
        access_token__entry=OuterRef("pk"), status__in=[Booking.Status.PROCESSING, Booking.Status.SUCCEEDED]
    )
    return Q(state=QueueEntry.State.BOOKED) & Exists(live)


def _requeue(*, entry: QueueEntry, room: WaitingRoom) -> tuple[QueueEntry, bool]:
    """Back of the line; (entry, False) if a concurrent join already did it."""
    number = _next_numbers(room, 1)[0] if room.opened_at else None
    updated = QueueEntry.objects.filter(pk=entry.pk, state=entry.state).update(
        number=number, state=QueueEntry.State.WAITING, admitted_at=None, joined_at=timezone.now()
    )
    entry.refresh_from_db()
    if updated:
        # A stream still open from the fan's last turn shows `expired` or
        # `booked` and ignores room news until told the fan is back in line.
        broadcast.fan_changed(event_id=entry.event_id, fan_id=entry.fan_id)
        if number is not None and number <= room.serving_number + 1:
            broadcast.wake_admitter(event_id=entry.event_id)
    return entry, bool(updated)


_NOT_IN_LINE_BOOKED = (
    "You cannot leave the line now: your turn became a booking that is still held or paid. "
    "Cancel the booking if you want to give its tickets back."
)


def leave_queue(*, event: Event, fan) -> None:
    """Leave the line; an unused access token dies with the place. Idempotent-ish: 404 once gone."""
    # Lock order as in a reservation: the access token, then the queue entry.
    with transaction.atomic():
        entry = QueueEntry.objects.filter(event=event, fan=fan).exclude(state=QueueEntry.State.LEFT).first()
        if entry is None:
            raise NotFound("You are not in line for this event.", code="not_in_queue")
        # Dead at once, also within the clock-skew leeway a reservation allows
        # (else a quick rejoin and readmission would revive it).
        now = timezone.now()
        revoked = now - timedelta(seconds=settings.ACCESS_TOKEN_LEEWAY_SECONDS + 1)
        AccessToken.objects.filter(entry=entry, used_at__isnull=True, expires_at__gt=revoked).update(expires_at=revoked)
        # The entry locked first, then checked by a statement of its own: in
        # an UPDATE that had to wait for the row, Postgres re-checks the row
        # but a subquery still reads from before the wait, and would miss a
        # booking committed meanwhile (one made with a token issued after
        # the tokens above were revoked). A booking still to come waits for
        # this lock and then finds the entry left.
        current = QueueEntry.objects.select_for_update().filter(pk=entry.pk).values_list("state", flat=True).first()
        if current in (None, QueueEntry.State.LEFT):
            raise NotFound("You are not in line for this event.", code="not_in_queue")
        if QueueEntry.objects.filter(pk=entry.pk).filter(_holds_a_live_booking()).exists():
            # Leaving would free the fan to join again and hold a second
            # order while this one lives (max_per_order is per turn).
            raise NotFound(_NOT_IN_LINE_BOOKED, code="not_in_queue")
        QueueEntry.objects.filter(pk=entry.pk).update(state=QueueEntry.State.LEFT)
        # Streams open in the fan's other tabs or devices stop showing the place.
        event_id, fan_id = entry.event_id, entry.fan_id
        transaction.on_commit(lambda: broadcast.fan_changed(event_id=event_id, fan_id=fan_id))


def admit_fans(*, event_id: int) -> int:
    """Advance the event's serving number as far as inventory allows.

    One admitter at a time per event: the room row is locked with SKIP LOCKED,
    so a second admitter returns at once instead of admitting anyone twice.
    Admits at most (available tickets - unused live tokens) fans, since each
    admitted fan takes at least one ticket, and never more unused live
    tokens at once than the checkout window (waitlist.pacing) under the
    room's checkout limit. Returns how many were admitted.
    """
    now = timezone.now()
    with transaction.atomic(durable=True):
        room = (
            WaitingRoom.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event")
            .filter(event_id=event_id)
            .first()
        )
        if room is None:
            return 0
        event = room.event
        inventory = event_inventory(event_id=event_id)
        status = event_status(event=event, available=inventory.available, held=inventory.held, now=now)
        if status in ("scheduled", "closed") or room.paused:
            return 0
        if room.opened_at is None:
            _open_sale(room=room, now=now)
        _number_stragglers(room=room)
        if status == "sold_out":
            serving = room.serving_number
            transaction.on_commit(lambda: broadcast.room_update(event_id=event_id, serving=serving, closed=True))
            return 0

        # A token stays spendable for the clock-skew leeway after it expires:
        # its ticket is not handed to the next fan until then.
        usable_after = now - timedelta(seconds=settings.ACCESS_TOKEN_LEEWAY_SECONDS)
        outstanding = AccessToken.objects.filter(
            event_id=event_id, used_at__isnull=True, expires_at__gt=usable_after, entry__state=QueueEntry.State.ADMITTED
        ).count()
        budget = inventory.available - outstanding
        window = checkout_window(room=room, outstanding=outstanding, now=now)
        if window is not None:
            budget = min(budget, window - outstanding)
        if room.admissions_per_minute:
            budget = min(budget, _rate_allowance(room=room, now=now))
        if budget <= 0:
            return 0
        admitted = list(
            QueueEntry.objects.filter(event_id=event_id, state=QueueEntry.State.WAITING, number__isnull=False)
            .order_by("number")
            .values_list("id", "fan_id", "number")[:budget]
        )
        if not admitted:
            return 0
        expires_at = now + timedelta(seconds=settings.ACCESS_TOKEN_TTL_SECONDS)
        with connection.cursor() as cursor:
            # Only from `waiting`: a fan who left since the read above stays gone.
            cursor.execute(
                "UPDATE waitlist_queueentry SET state = 'admitted', admitted_at = %s "
                "WHERE id = ANY(%s) AND state = 'waiting' RETURNING id, fan_id",
                [now, [a[0] for a in admitted]],
            )
            tokens_for = cursor.fetchall()
        AccessToken.objects.bulk_create(
            AccessToken(entry_id=entry_id, event_id=event_id, fan_id=fan_id, issued_at=now, expires_at=expires_at)
            for entry_id, fan_id in tokens_for
        )
        room.serving_number = max(room.serving_number, admitted[-1][2])
        _update_rate(room=room, count=len(tokens_for), now=now)
        _spend_rate_credit(room=room, count=len(tokens_for))
        room.save(
            update_fields=["serving_number", "admission_rate", "last_admitted_at", "rate_credit_at", "updated_at"]
        )
        serving, rate = room.serving_number, room.admission_rate
    # One message for the whole batch: each connection whose fan's number is
    # now served reads its token from Postgres. (A message per admitted fan
    # cost a publish each and made admitting 100,000 fans take minutes.)
    broadcast.room_update(event_id=event_id, serving=serving, rate=rate)
    return len(tokens_for)


def _open_sale(*, room: WaitingRoom, now) -> None:
    """Shuffle the pre-queue once, at on-sale, and record the seed for audit.

    Pre-queue numbers are drawn from the sequence before `opened_at` commits,
    so every fan who joins after the sale opened gets a larger number.
    """
    seed = secrets.token_hex(16)
    # Only fans who joined before on_sale_at: those who came after it but
    # before this (up to one admitter tick) are numbered after them, in join
    # order, by _number_stragglers.
    pre_queue = list(
        QueueEntry.objects.filter(event_id=room.event_id, number__isnull=True, joined_at__lt=room.event.on_sale_at)
        .order_by("id")
        .values_list("id", flat=True)
    )
    random.Random(seed).shuffle(pre_queue)
    _assign_numbers(room=room, entry_ids=pre_queue)
    room.opened_at = now
    room.shuffle_seed = seed
    room.pre_queue_size = len(pre_queue)
    room.save(update_fields=["opened_at", "shuffle_seed", "pre_queue_size", "updated_at"])


def _number_stragglers(*, room: WaitingRoom) -> None:
    # Fans who joined after on_sale_at but before the sale was opened here,
    # or whose join raced the opening (read "not open", committed after the
    # shuffle), have no number yet: the next ones, in join order.
    stragglers = list(
        QueueEntry.objects.filter(event_id=room.event_id, number__isnull=True)
        .order_by("joined_at", "id")
        .values_list("id", flat=True)
    )
    _assign_numbers(room=room, entry_ids=stragglers)


def _assign_numbers(*, room: WaitingRoom, entry_ids: list[int]) -> None:
    if not entry_ids:
        return
    numbers = _next_numbers(room, len(entry_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE waitlist_queueentry AS q SET number = v.number "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, number) WHERE q.id = v.id",
            [entry_ids, numbers],
        )


def _rate_allowance(*, room: WaitingRoom, now) -> int:
    """How many fans the staff's rate cap lets in now.

    Credit accrues at the capped rate from `rate_credit_at` and each admitted
    fan spends 1/rate of it (see _spend_rate_credit), so however often the
    admitter runs, the cap holds exactly; at most a tick's worth (and one
    fan) can build up, so a quiet spell cannot be spent as a burst.
    """
    per_second = room.admissions_per_minute / 60
    # One tick's worth, plus one fan so the fraction left over is carried.
    window = settings.ADMISSION_TICK_SECONDS + 1 / per_second
    credit_from = max(room.rate_credit_at or now - timedelta(seconds=window), now - timedelta(seconds=window))
    room.rate_credit_at = credit_from
    return math.floor((now - credit_from).total_seconds() * per_second)


def _spend_rate_credit(*, room: WaitingRoom, count: int) -> None:
    if room.admissions_per_minute and room.rate_credit_at is not None:
        room.rate_credit_at += timedelta(seconds=count * 60 / room.admissions_per_minute)


def _update_rate(*, room: WaitingRoom, count: int, now) -> None:
    # Exponentially smoothed fans/second over the gaps between admissions.
    if room.last_admitted_at is not None:
        elapsed = max((now - room.last_admitted_at).total_seconds(), 0.001)
        instant = count / elapsed
        room.admission_rate = instant if room.admission_rate == 0 else 0.7 * room.admission_rate + 0.3 * instant
    room.last_admitted_at = now


def limits_changed(*, event_id: int) -> None:
    """Staff changed the room's admission limits: apply them now, not at the next tick.

    After commit: admin saves in a transaction, and an admitter woken before
    it commits would find the room row locked and skip it.
    """
    transaction.on_commit(lambda: broadcast.wake_admitter(event_id=event_id))


def set_paused(*, event_ids: list[int], paused: bool) -> int:
    """Pause or resume admission (fans keep their places); returns how many rooms changed."""
    changed = WaitingRoom.objects.filter(event_id__in=event_ids).exclude(paused=paused).update(paused=paused)
    for event_id in event_ids:
        transaction.on_commit(lambda event_id=event_id: _room_resumed_or_paused(event_id=event_id, paused=paused))
    return changed


def _room_resumed_or_paused(*, event_id: int, paused: bool) -> None:
    broadcast.room_changed(event_id=event_id)  # waiting screens show it at once
    if not paused:
        broadcast.wake_admitter(event_id=event_id)
