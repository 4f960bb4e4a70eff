"""Moving tickets between available, held and sold, in SQL.

Every move is one conditional UPDATE: the WHERE clause checks the counts and
the bucket constraints back it, so a bug in Python cannot oversell. Callers
own the transaction. Locks: one bucket row per move, except consolidation,
which locks an event's buckets in index order.
"""

from django.db import connection, transaction

BUCKET = "ticketing_inventorybucket"

# Try an unlocked bucket that can serve the whole order first (SKIP LOCKED in
# random order spreads concurrent reservations over the buckets), then wait
# for the first bucket, in index order, that can.
_TAKE_FROM_ONE_BUCKET = f"""
UPDATE {BUCKET} SET available = available - %(n)s, {{column}} = {{column}} + %(n)s
WHERE id = (
    SELECT id FROM {BUCKET}
    WHERE event_id = %(event)s AND available >= %(n)s
    ORDER BY {{order}} LIMIT 1
    FOR UPDATE {{skip}}
) AND available >= %(n)s
RETURNING id
"""
_ATTEMPTS = (("random()", "SKIP LOCKED"), ("index", ""))


def take_tickets(*, event_id: int, quantity: int, into: str = "held") -> int | None:
    """Move `quantity` tickets from available to `into` ("held" or "sold").

    Returns the bucket id they came from, or None when the event as a whole
    does not have them. When no single bucket has enough but the buckets
    together do, tickets are first gathered into one bucket.

    Deadlock freedom: a row lock taken on a row that then fails the
    `available >= n` re-check is kept until the (sub)transaction ends, so each
    attempt runs in a savepoint that is rolled back when it finds nothing;
    every wait then happens in bucket index order.
    """
    if into not in ("held", "sold"):
        raise ValueError(into)
    params = {"event": event_id, "n": quantity}
    with connection.cursor() as cursor:
        for order, skip in _ATTEMPTS:
            savepoint = transaction.savepoint()
            cursor.execute(_TAKE_FROM_ONE_BUCKET.format(column=into, order=order, skip=skip), params)
            row = cursor.fetchone()
            if row:
                transaction.savepoint_commit(savepoint)
                return row[0]
            transaction.savepoint_rollback(savepoint)
    bucket_id = _consolidate(event_id=event_id, quantity=quantity)
    if bucket_id is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {BUCKET} SET available = available - %s, {into} = {into} + %s "
            "WHERE id = %s AND available >= %s RETURNING id",
            [quantity, quantity, bucket_id, quantity],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _consolidate(*, event_id: int, quantity: int) -> int | None:
    """Gather `quantity` available tickets into one bucket, or return None.

    Locks the event's buckets in index order (so two consolidations cannot
    deadlock) and moves available tickets, with their capacity, into the
    fullest bucket. Held and sold counts never move, so every hold still goes
    back to the bucket it came from.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, available FROM {BUCKET} WHERE event_id = %s ORDER BY index FOR UPDATE",
            [event_id],
        )
        rows = cursor.fetchall()
        if sum(available for _, available in rows) < quantity:
            return None
        target_id, target_available = max(rows, key=lambda r: r[1])
        needed = quantity - target_available
        for bucket_id, available in rows:
            if needed <= 0:
                break
            if bucket_id == target_id or available == 0:
                continue
            moved = min(available, needed)
            cursor.execute(
                f"UPDATE {BUCKET} SET available = available - %s, capacity = capacity - %s WHERE id = %s",
                [moved, moved, bucket_id],
            )
            cursor.execute(
                f"UPDATE {BUCKET} SET available = available + %s, capacity = capacity + %s WHERE id = %s",
                [moved, moved, target_id],
            )
            needed -= moved
    return target_id


def release_held(*, bucket_id: int, quantity: int) -> None:
    """Return held tickets to available (the bucket's constraint refuses a double return)."""
    _move(bucket_id=bucket_id, quantity=quantity, source="held", target="available")


def sell_held(*, bucket_id: int, quantity: int) -> None:
    _move(bucket_id=bucket_id, quantity=quantity, source="held", target="sold")


def release_sold(*, bucket_id: int, quantity: int) -> None:
    _move(bucket_id=bucket_id, quantity=quantity, source="sold", target="available")


def _move(*, bucket_id: int, quantity: int, source: str, target: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {BUCKET} SET {source} = {source} - %s, {target} = {target} + %s WHERE id = %s AND {source} >= %s",
            [quantity, quantity, bucket_id, quantity],
        )
        if cursor.rowcount != 1:
            # The booking's state said these tickets were here; a mismatch is
            # a bug, and committing would corrupt the counts.
            raise RuntimeError(f"bucket {bucket_id} has fewer than {quantity} {source} tickets")
