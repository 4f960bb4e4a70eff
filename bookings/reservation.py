"""Holding tickets: the hot path of an on-sale.

A reservation spends the fan's access token, takes tickets from an inventory
bucket and inserts the booking. The common case is one prepared SQL
statement; the reservations a process has in flight at the same moment run
together in one short transaction (bookings.group_commit), pipelined in one
round trip with one commit. A statement that cannot complete at once (its
token is locked by another request, no unlocked bucket holds the whole
order, the token is not usable) changes nothing, and that reservation takes
the general path alone: wait for the token and a bucket in index order, or
gather tickets from several buckets, and say exactly why if it cannot.
Either way the conditional UPDATEs and the bucket constraints make
overselling impossible, and a refusal changes nothing (the token stays
usable).
"""

import logging
import random
import time
from datetime import timedelta

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone

from bookings.expiry import batcher
from bookings.group_commit import GroupCommit
from bookings.models import Booking
from ticketing import inventory
from ticketing.errors import Conflict, Forbidden, ServiceError
from ticketing.models import Event
from waitlist.models import AccessToken, QueueEntry
from waitlist.tokens import InvalidTokenString, read_token

log = logging.getLogger(__name__)

# The fast path. The token and its queue entry are locked (in the order
# leaving the line takes them) and checked on their latest versions: token
# not yet spent, this fan's, this event's, unexpired; the fan still
# admitted (not left, not booked through another token). A bucket that can
# serve the order is taken: the buckets are tried in index order from a
# starting bucket drawn once per batch, so a batch keeps taking the bucket it
# already locked and the batches of other processes start elsewhere. (In
# random order per statement, a batch of 30 locked most of the 16 buckets
# until its commit and the other process's batch found none free: 0.5% of
# reservations fell to the general path at 64 connections; none do now, and
# benchmarks/reserve.py books 7% more per second.) Both locks use SKIP LOCKED so a batch never
# waits on another transaction (two batches waiting on each other's tokens
# would deadlock); only if both succeeded is the booking inserted, the
# token spent and the entry marked booked. A statement that books nothing
# holds at most its token's and entry's locks until the batch commits. The
# rows are locked by the token's key alone and the conditions checked on
# the locked rows: given them all, Postgres with stale statistics (a fresh
# on-sale) scans every outstanding token of the event through
# token_event_outstanding instead of the key.
_RESERVE_IN_ONE_STATEMENT = """
WITH locked AS MATERIALIZED (
    SELECT t.id, t.entry_id, t.fan_id, t.event_id, t.used_at, t.expires_at, q.state
    FROM waitlist_accesstoken t JOIN waitlist_queueentry q ON q.id = t.entry_id
    WHERE t.id = %(token)s
    FOR UPDATE OF t, q SKIP LOCKED
), token AS (
    SELECT id, entry_id FROM locked
    WHERE fan_id = %(fan)s AND event_id = %(event)s AND used_at IS NULL AND state = 'admitted'
      AND expires_at > now() - make_interval(secs => %(leeway)s)
), bucket AS (
    UPDATE ticketing_inventorybucket SET available = available - %(n)s, held = held + %(n)s
    WHERE id = (
        SELECT id FROM ticketing_inventorybucket
        WHERE event_id = %(event)s AND available >= %(n)s AND EXISTS (SELECT 1 FROM token)
        ORDER BY index < %(first_bucket)s, index LIMIT 1 FOR UPDATE SKIP LOCKED
    ) AND available >= %(n)s
    RETURNING id
), booking AS (
    INSERT INTO bookings_booking (
        event_id, fan_id, bucket_id, access_token_id, quantity, unit_price, amount, currency, status,
        holds_tickets, created_at, expires_at, failure_reason, payment_intent_id, client_secret, refund_id,
        late_payment, needs_refund, refund_note, previous_payment_intents, payment_attempts
    )
    SELECT %(event)s, %(fan)s, bucket.id, token.id, %(n)s, %(price)s, %(amount)s, %(currency)s, 'processing',
           true, now(), now() + make_interval(secs => %(hold)s), '', '', '', '', false, false, '', '{}', 1
    FROM token, bucket
    RETURNING {booking_columns}
), spent AS (
    UPDATE waitlist_accesstoken SET used_at = now()
    WHERE id = (SELECT id FROM token) AND EXISTS (SELECT 1 FROM booking)
), entry AS (
    UPDATE waitlist_queueentry SET state = 'booked'
    WHERE id = (SELECT entry_id FROM token) AND EXISTS (SELECT 1 FROM booking)
)
SELECT booking.* FROM (SELECT 1) AS one LEFT JOIN booking ON true
""".replace(
    # Every column, in the model's field order: the row becomes a Booking
    # without a second query and without Model.__init__'s keyword path.
    "{booking_columns}",
    ", ".join(field.column for field in Booking._meta.concrete_fields),
)


def check_quantity(*, event: Event, quantity: object) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= event.max_per_order:
        raise ServiceError(f"Choose between 1 and {event.max_per_order} tickets.", code="invalid_quantity", status=400)
    return quantity


def reserve_tickets(*, event: Event, fan, quantity: object, access_token: object) -> Booking:
    """Spend the access token and hold `quantity` tickets, in one short transaction.

    Concurrent calls can neither reuse a token nor oversell; a refusal
    changes nothing. The hold's expiry is scheduled after commit.
    """
    quantity = check_quantity(event=event, quantity=quantity)
    if event.sale_closed or event.starts_at <= timezone.now():
        raise Conflict("The sale for this event is closed.", code="sale_closed")
    try:
        claims = read_token(access_token)
    except InvalidTokenString:
        raise Forbidden("This access token is not valid.", code="invalid_token") from None
    if claims.event_id != event.pk or claims.fan_id != fan.pk:
        raise Forbidden("This access token is not valid for you and this event.", code="invalid_token")

    booking = _reserve_fast(event=event, fan=fan, quantity=quantity, token_id=claims.token_id)
    if booking is None:
        booking = _reserve_general(event=event, fan=fan, quantity=quantity, token_id=claims.token_id)
    return booking


def _reserve_fast(*, event: Event, fan, quantity: int, token_id) -> Booking | None:
    """The one-statement reservation, batched with concurrent ones; None when it could not complete at once."""
    params = _statement_params(event=event, fan_id=fan.pk, quantity=quantity, token_id=token_id)
    if settings.RESERVATION_GROUP_COMMIT:
        row = _group_commit.submit(params)
    else:
        row = _reserve_batch([params])[0]
    if row is None:
        return None
    return Booking.from_db(DEFAULT_DB_ALIAS, None, row)


def _statement_params(*, event: Event, fan_id: int, quantity: int, token_id) -> dict:
    return {
        "token": token_id,
        "fan": fan_id,
        "event": event.pk,
        "n": quantity,
        "leeway": settings.ACCESS_TOKEN_LEEWAY_SECONDS,
        "price": event.price,
        "amount": event.price * quantity,
        "currency": event.currency,
        "hold": settings.HOLD_SECONDS,
    }


def _reserve_batch(batch: list[dict]) -> list[tuple | None]:
    """Run the reservation statement once per params, in one transaction and one round trip.

    Returns the booking's row (every column, in field order) for each booked
    reservation and None for each that booked nothing (and changed nothing).
    """
    # One starting bucket for the whole batch (see _RESERVE_IN_ONE_STATEMENT).
    first_bucket = random.randrange(settings.INVENTORY_BUCKETS)
    for params in batch:
        params["first_bucket"] = first_bucket
    with transaction.atomic(durable=True):
        connection.ensure_connection()
        # A server-side binding cursor on the raw connection: executemany
        # pipelines the statements and runs them prepared (planning this
        # statement costs more than executing it). Django's own cursors bind
        # on the client and are unaffected.
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.executemany(_RESERVE_IN_ONE_STATEMENT, batch, returning=True)
            rows = [cursor.fetchone()]
            while cursor.nextset():
                rows.append(cursor.fetchone())
        results = [row if row[0] is not None else None for row in rows]
    # Committed: from here nothing may raise, or callers whose holds exist
    # would be told they have none (see bookings.group_commit).
    _schedule_expiry_safely(booking_ids=[row[0] for row in results if row is not None])
    return results


_group_commit = GroupCommit(_reserve_batch, max_batch=settings.RESERVATION_BATCH_MAX)


def _reserve_general(*, event: Event, fan, quantity: int, token_id) -> Booking:
    """Wait for a bucket, or gather tickets from several (see ticketing.inventory)."""
    with transaction.atomic(durable=True):
        entry_id = _consume_token(token_id=token_id, fan_id=fan.pk, event_id=event.pk)
        bucket_id = inventory.take_tickets(event_id=event.pk, quantity=quantity, into="held")
        if bucket_id is None:
            raise Conflict("Not enough tickets are left for that quantity.", code="not_enough_tickets")
        booking = Booking.objects.create(
            event=event,
            fan=fan,
            bucket_id=bucket_id,
            access_token_id=token_id,
            quantity=quantity,
            unit_price=event.price,
            amount=event.price * quantity,
            currency=event.currency,
            expires_at=timezone.now() + timedelta(seconds=settings.HOLD_SECONDS),
        )
        QueueEntry.objects.filter(pk=entry_id).update(state=QueueEntry.State.BOOKED)
        _expire_after_commit(booking_ids=[booking.pk])
    return booking


def _schedule_expiry_safely(*, booking_ids: list[int]) -> None:
    if not booking_ids:
        return
    try:
        batcher.schedule(booking_ids=booking_ids, due_at=time.time() + settings.HOLD_SECONDS)
    except Exception:  # the sweeper expires holds whose task was never sent
        log.exception("could not schedule expiry of %d holds", len(booking_ids))


def _expire_after_commit(*, booking_ids: list[int]) -> None:
    if booking_ids:
        due_at = time.time() + settings.HOLD_SECONDS
        transaction.on_commit(lambda: batcher.schedule(booking_ids=booking_ids, due_at=due_at))


def _consume_token(*, token_id, fan_id: int, event_id: int) -> int:
    """Mark the token used (database clock, with leeway for skew); return its queue entry id."""
    with connection.cursor() as cursor:
        # Locked by id alone first (see _RESERVE_IN_ONE_STATEMENT for why).
        cursor.execute(
            "WITH locked AS MATERIALIZED ("
            "  SELECT t.*, q.state FROM waitlist_accesstoken t JOIN waitlist_queueentry q ON q.id = t.entry_id"
            "  WHERE t.id = %s FOR UPDATE OF t, q"
            ") UPDATE waitlist_accesstoken SET used_at = now() WHERE id = ("
            "  SELECT id FROM locked WHERE fan_id = %s AND event_id = %s AND used_at IS NULL "
            "  AND expires_at > now() - make_interval(secs => %s) "
            # A fan who left the line gave up the admission with it; one
            # admission books once even if it was given a second token.
            "  AND state = 'admitted'"
            ") RETURNING entry_id",
            [token_id, fan_id, event_id, settings.ACCESS_TOKEN_LEEWAY_SECONDS],
        )
        row = cursor.fetchone()
    if row:
        return row[0]
    _explain_unusable_token(token_id=token_id, fan_id=fan_id, event_id=event_id)


def _explain_unusable_token(*, token_id, fan_id: int, event_id: int):
    """Raise the 403 that says why this token cannot be spent."""
    token = AccessToken.objects.filter(pk=token_id, fan_id=fan_id, event_id=event_id).first()
    if token is None:
        raise Forbidden("This access token is not valid.", code="invalid_token")
    if token.used_at is not None:
        raise Forbidden("This access token has already been used.", code="token_used")
    entry_state = QueueEntry.objects.filter(pk=token.entry_id).values_list("state", flat=True).first()
    if entry_state == QueueEntry.State.BOOKED:
        raise Forbidden("This admission has already been used for a booking.", code="token_used")
    if entry_state != QueueEntry.State.ADMITTED:
        raise Forbidden("This access token was given up when you left the line.", code="invalid_token")
    raise Forbidden("This access token has expired. Join the line again.", code="token_expired")
