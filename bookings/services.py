"""Reserving tickets, paying for them and ending holds.

Lock order everywhere: access token, then booking, then inventory bucket
(a late payment locks the fan's queue entry between booking and bucket).
No Stripe call is made while any of these rows is locked: reserve, commit,
call out, then re-check under a short lock.
"""

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from bookings.models import Booking
from bookings.reservation import reserve_tickets
from payments import gateway
from ticketing import inventory
from ticketing.errors import Conflict, NotFound, ServiceError, Unavailable
from ticketing.models import Event
from ticketing.selectors import event_inventory
from waitlist import broadcast
from waitlist.models import AccessToken, QueueEntry

log = logging.getLogger(__name__)

Status = Booking.Status
ENDED_WITHOUT_TICKETS = (Status.FAILED, Status.EXPIRED, Status.CANCELLED)


def book_tickets(*, event: Event, fan, quantity: object, access_token: object) -> Booking:
    """Hold the tickets, then open a PaymentIntent for them.

    If Stripe cannot be reached the hold is released and the access token
    made usable again, so the fan can simply retry (503 payment_unavailable).
    The intent is attached only to a booking still holding its tickets: one
    that ended while Stripe was being called (cancelled from another tab,
    expired) gets its new intent cancelled, and the fan a 409.
    """
    booking = reserve_tickets(event=event, fan=fan, quantity=quantity, access_token=access_token)
    try:
        intent_id, client_secret = gateway.create_payment_intent(
            booking_id=booking.pk, amount=booking.amount, currency=booking.currency, event_name=event.name
        )
    except gateway.PaymentError:
        log.warning("payment provider unavailable for booking %s", booking.pk, exc_info=True)
        if not release_unpaid_hold(booking_id=booking.pk):
            _refuse_ended_booking(booking_id=booking.pk)
        raise Unavailable(
            "Payments are unavailable right now; your tickets were not held. Please try again.",
            code="payment_unavailable",
        ) from None
    attached = Booking.objects.filter(pk=booking.pk, payment_intent_id="", status=Status.PROCESSING).update(
        payment_intent_id=intent_id, client_secret=client_secret
    )
    if not attached:
        _cancel_orphan_intent(payment_intent_id=intent_id)
        _refuse_ended_booking(booking_id=booking.pk)
    # Only now is the token spent for good (a failed Stripe call gives it
    # back): its place under the room's checkout limit goes to the next fan.
    broadcast.checkout_place_freed(event_id=event.pk)
    booking.refresh_from_db()
    return booking


def _cancel_orphan_intent(*, payment_intent_id: str) -> None:
    # Nobody will be shown this intent; if it cannot be cancelled now, a
    # payment on it still lands as a late payment (taken again or refunded).
    try:
        gateway.cancel_payment_intent(payment_intent_id)
    except gateway.PaymentError:
        log.warning("could not cancel orphan payment intent %s", payment_intent_id, exc_info=True)


def _refuse_ended_booking(*, booking_id: int):
    status = Booking.objects.filter(pk=booking_id).values_list("status", flat=True).first()
    raise Conflict(
        f"This booking ended while its payment was being set up (its status is {status}).", code="booking_ended"
    )


def _schedule_expiry(*, booking_id: int, countdown: float) -> None:
    from bookings.tasks import expire_hold_task

    try:
        expire_hold_task.apply_async(args=[booking_id], countdown=max(countdown, 0))
    except Exception:  # broker down: the sweeper expires the hold instead
        log.warning("could not schedule expiry of booking %s", booking_id, exc_info=True)


def _return_hold(*, booking_id: int, to: str, reason: str = "", skip_locked: bool = False) -> Booking | None:
    """processing -> `to`, tickets back to their bucket, exactly once.

    Call inside a transaction. The conditional UPDATE on the booking is the
    guard: whichever path (webhook, task, sweeper, fan) gets here second
    finds no processing booking and changes nothing. With `skip_locked`
    (expiry), a booking another worker has locked is left to that worker.
    """
    with connection.cursor() as cursor:
        if skip_locked:
            cursor.execute(
                "SELECT 1 FROM bookings_booking WHERE id = %s AND status = 'processing' FOR UPDATE SKIP LOCKED",
                [booking_id],
            )
            if cursor.fetchone() is None:
                return None
        cursor.execute(
            "UPDATE bookings_booking SET status = %s, holds_tickets = false, finished_at = now(), "
            "failure_reason = %s WHERE id = %s AND status = 'processing' "
            "RETURNING bucket_id, quantity, event_id, fan_id",
            [to, reason, booking_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    bucket_id, quantity, event_id, fan_id = row
    inventory.release_held(bucket_id=bucket_id, quantity=quantity)
    transaction.on_commit(lambda: _tickets_returned(event_id=event_id, fan_id=fan_id))
    return Booking.objects.get(pk=booking_id)


def _tickets_returned(*, event_id: int, fan_id: int) -> None:
    broadcast.wake_admitter(event_id=event_id)
    broadcast.fan_changed(event_id=event_id, fan_id=fan_id)


def _tickets_sold(*, event_id: int, fan_id: int) -> None:
    broadcast.fan_changed(event_id=event_id, fan_id=fan_id)
    # The sale that empties the pool tells the fans still in line at once
    # (the admitter broadcasts `closed`) instead of at its next tick.
    totals = event_inventory(event_id=event_id)
    if totals.available == 0 and totals.held == 0:
        broadcast.wake_admitter(event_id=event_id)


def release_unpaid_hold(*, booking_id: int) -> bool:
    """The payment provider failed before the fan saw the booking: undo it.

    Tickets go back and the access token is usable again (its link to the
    booking is cleared, the booking stays as `failed` for the record), unless
    the fan left the line meanwhile: leaving gave the admission up. Returns
    False if the hold had already ended some other way (nothing changes).
    """
    with transaction.atomic(durable=True):
        booking = _return_hold(booking_id=booking_id, to=Status.FAILED, reason="payment_unavailable")
        if booking is None:
            return False
        if booking.access_token_id is None:
            return True
        readmitted = QueueEntry.objects.filter(
            tokens__pk=booking.access_token_id, state=QueueEntry.State.BOOKED
        ).update(state=QueueEntry.State.ADMITTED)
        if readmitted:
            AccessToken.objects.filter(pk=booking.access_token_id).update(used_at=None)
            Booking.objects.filter(pk=booking_id).update(access_token=None)
    return True


def cancel_booking(*, booking_id: int, fan) -> Booking:
    """The fan gives the hold back. Cancels the PaymentIntent first, outside any lock;
    if the payment already went through, the booking succeeds instead (409)."""
    booking = Booking.objects.filter(pk=booking_id, fan=fan).first()
    if booking is None:
        raise NotFound("No such booking.")
    if booking.status != Status.PROCESSING:
        raise Conflict(
            f"This booking can no longer be cancelled (its status is {booking.status}).", code="not_cancellable"
        )
    ended = _end_hold(booking=booking, to=Status.CANCELLED, reason="cancelled_by_fan")
    if ended.status != Status.CANCELLED:
        raise Conflict(
            f"This booking can no longer be cancelled (its status is {ended.status}).", code="not_cancellable"
        )
    return ended


def expire_hold(*, booking_id: int) -> str:
    """End an overdue hold; idempotent. Returns what happened, for logs."""
    booking = Booking.objects.filter(pk=booking_id).first()
    if booking is None or booking.status != Status.PROCESSING:
        return "not processing"
    remaining = (booking.expires_at - timezone.now()).total_seconds()
    if remaining > 0:
        _schedule_expiry(booking_id=booking_id, countdown=remaining)
        return "not due yet"
    return _end_hold(booking=booking, to=Status.EXPIRED, reason="hold_expired").status


def _end_hold(*, booking: Booking, to: str, reason: str) -> Booking:
    """Cancel the PaymentIntent at Stripe (no lock held), then end the hold.

    If Stripe says the money already arrived, the booking succeeds instead;
    if the payment is still processing, the hold stays for the webhook.
    If Stripe cannot be reached the hold ends anyway: a payment that still
    lands is handled as a late payment (tickets retaken or refunded).
    """
    if booking.payment_intent_id:
        try:
            intent_status = gateway.cancel_payment_intent(booking.payment_intent_id)
        except gateway.PaymentError:
            log.warning("could not cancel %s; ending the hold anyway", booking.payment_intent_id, exc_info=True)
            intent_status = "unknown"
        if intent_status == "succeeded":
            booking = record_payment_succeeded(booking_id=booking.pk)
            if booking.needs_refund:
                refund_late_payment(booking_id=booking.pk)
                booking.refresh_from_db()
            return booking
        if intent_status == "processing":
            _schedule_expiry(booking_id=booking.pk, countdown=30)
            return booking
    with transaction.atomic(durable=True):
        _return_hold(booking_id=booking.pk, to=to, reason=reason, skip_locked=to == Status.EXPIRED)
    booking.refresh_from_db()
    return booking


def record_payment_succeeded(*, booking_id: int) -> Booking:
    """The money arrived: sell the held tickets, or handle a late payment.

    processing -> succeeded moves held to sold. For a booking whose hold had
    already ended, the tickets are taken again if the pool has them
    (-> succeeded), else the booking is marked `needs_refund`; the caller
    then calls refund_late_payment after commit. Database only, so it can run
    inside the webhook's transaction. Idempotent: a repeat finds nothing to do.
    """
    with transaction.atomic():
        booking = Booking.objects.select_for_update().get(pk=booking_id)
        if booking.status == Status.PROCESSING:
            Booking.objects.filter(pk=booking_id).update(status=Status.SUCCEEDED, finished_at=timezone.now())
            inventory.sell_held(bucket_id=booking.bucket_id, quantity=booking.quantity)
            fan_id, event_id = booking.fan_id, booking.event_id
            transaction.on_commit(lambda: _tickets_sold(event_id=event_id, fan_id=fan_id))
        elif booking.status in ENDED_WITHOUT_TICKETS and not booking.needs_refund:
            _take_late_payment(booking=booking)
    booking.refresh_from_db()
    return booking


def fan_moved_on(*, booking: Booking, entry: QueueEntry | None) -> bool:
    """Whether the fan is back in line (`entry`: their place for the event)
    or holds another live order for the event since `booking`."""
    if entry is not None and entry.state in (QueueEntry.State.WAITING, QueueEntry.State.ADMITTED):
        return True
    return (
        Booking.objects.filter(
            event_id=booking.event_id, fan_id=booking.fan_id, status__in=[Status.PROCESSING, Status.SUCCEEDED]
        )
        .exclude(pk=booking.pk)
        .exists()
    )


def _take_late_payment(*, booking: Booking) -> None:
    # A fan who has moved on to a new turn, or holds another live order for
    # the event, gets the money back: retaking tickets here would give them
    # two orders from two turns (max_per_order is per turn).
    entry = QueueEntry.objects.select_for_update().filter(event_id=booking.event_id, fan_id=booking.fan_id).first()
    bucket_id = None
    if not fan_moved_on(booking=booking, entry=entry):
        bucket_id = inventory.take_tickets(event_id=booking.event_id, quantity=booking.quantity, into="sold")
    if bucket_id is not None:
        Booking.objects.filter(pk=booking.pk).update(
            status=Status.SUCCEEDED,
            holds_tickets=True,
            bucket_id=bucket_id,
            late_payment=True,
            finished_at=timezone.now(),
        )
        if entry is not None:
            # The turn ends in this order again (a fan who left after the
            # decline cannot join again while it lives).
            QueueEntry.objects.filter(pk=entry.pk).update(state=QueueEntry.State.BOOKED)
        event_id, fan_id = booking.event_id, booking.fan_id
        transaction.on_commit(lambda: _tickets_sold(event_id=event_id, fan_id=fan_id))
    else:
        Booking.objects.filter(pk=booking.pk).update(needs_refund=True, late_payment=True)


def refund_late_payment(*, booking_id: int) -> None:
    """Refund a late payment whose tickets were gone, exactly once.

    Claims the refund with a conditional UPDATE before calling Stripe (the
    local Stripe server ignores idempotency keys, so the claim is what stops
    a second refund). A failed call releases the claim for the sweeper.
    """
    claimed = Booking.objects.filter(pk=booking_id, needs_refund=True, refund_claimed_at__isnull=True).update(
        refund_claimed_at=timezone.now()
    )
    if not claimed:
        return
    booking = Booking.objects.get(pk=booking_id)
    try:
        refund_id = gateway.refund_payment_intent(payment_intent_id=booking.payment_intent_id, booking_id=booking_id)
    except gateway.PaymentError:
        log.warning("refund of booking %s failed; will retry", booking_id, exc_info=True)
        Booking.objects.filter(pk=booking_id).update(refund_claimed_at=None)
        return
    Booking.objects.filter(pk=booking_id, needs_refund=True).update(
        status=Status.REFUNDED, refund_id=refund_id, needs_refund=False, finished_at=timezone.now()
    )
    broadcast.fan_changed(event_id=booking.event_id, fan_id=booking.fan_id)


def restart_payment(*, booking: Booking) -> Booking:
    """Give a booking whose card was declined a fresh PaymentIntent.

    The local Stripe server cannot confirm a declined intent again (real
    Stripe can), so a retry after a decline cancels the old intent and opens
    a new one; payment on it is then handled as a late payment (the tickets
    are retaken if the pool still has them, else refunded). If the old intent
    turns out to have succeeded, that payment is recorded instead. Stripe is
    called with no row locked; the swap is a conditional UPDATE.
    """
    if booking.status != Status.FAILED or booking.failure_reason not in ("payment_failed", "payment_retried"):
        return booking
    old_status = gateway.cancel_payment_intent(booking.payment_intent_id)
    if old_status in ("succeeded", "processing"):
        return record_payment_succeeded(booking_id=booking.pk) if old_status == "succeeded" else booking
    attempt = booking.payment_attempts + 1
    intent_id, client_secret = gateway.create_payment_intent(
        booking_id=booking.pk,
        amount=booking.amount,
        currency=booking.currency,
        event_name=booking.event.name,
        attempt=attempt,
    )
    Booking.objects.filter(pk=booking.pk, payment_intent_id=booking.payment_intent_id).update(
        payment_intent_id=intent_id,
        client_secret=client_secret,
        payment_attempts=attempt,
        previous_payment_intents=booking.previous_payment_intents + [booking.payment_intent_id],
        failure_reason="payment_retried",
    )
    booking.refresh_from_db()
    return booking


def refund_booking(*, booking_id: int, return_tickets: bool, staff_email: str) -> Booking:
    """Staff refund of a paid booking: succeeded -> refunded, exactly once.

    The refund is claimed by a conditional UPDATE before Stripe is called (no
    row lock held across the call); the tickets go back to the pool only if
    staff chose so. Raises ServiceError if the booking is not refundable or
    Stripe refuses.
    """
    claimed = Booking.objects.filter(pk=booking_id, status=Status.SUCCEEDED, refund_claimed_at__isnull=True).update(
        refund_claimed_at=timezone.now()
    )
    if not claimed:
        raise Conflict("Only a paid booking that is not already being refunded can be refunded.", code="not_refundable")
    booking = Booking.objects.get(pk=booking_id)
    try:
        refund_id = gateway.refund_payment_intent(payment_intent_id=booking.payment_intent_id, booking_id=booking_id)
    except gateway.PaymentError as exc:
        Booking.objects.filter(pk=booking_id).update(refund_claimed_at=None)
        raise ServiceError(f"Stripe refused the refund: {exc}", code="refund_failed", status=502) from None
    note = f"refunded by {staff_email}; tickets {'returned to the pool' if return_tickets else 'kept out of sale'}"
    with transaction.atomic(durable=True):
        updated = Booking.objects.filter(pk=booking_id, status=Status.SUCCEEDED).update(
            status=Status.REFUNDED,
            refund_id=refund_id,
            refund_note=note[:255],
            finished_at=timezone.now(),
            holds_tickets=not return_tickets,
        )
        if updated and return_tickets:
            inventory.release_sold(bucket_id=booking.bucket_id, quantity=booking.quantity)
            event_id, fan_id = booking.event_id, booking.fan_id
            transaction.on_commit(lambda: _tickets_returned(event_id=event_id, fan_id=fan_id))
    booking.refresh_from_db()
    return booking


def record_payment_failed(*, booking_id: int) -> Booking:
    """A declined payment: the hold ends and the tickets go back (processing -> failed).

    The fan may still pay with another card while the PaymentIntent is open;
    such a payment is handled as a late payment.
    """
    with transaction.atomic():
        _return_hold(booking_id=booking_id, to=Status.FAILED, reason="payment_failed")
    return Booking.objects.get(pk=booking_id)


def record_payment_canceled(*, booking_id: int) -> Booking:
    """The PaymentIntent was cancelled at Stripe: no money can arrive, end the hold."""
    with transaction.atomic():
        _return_hold(booking_id=booking_id, to=Status.CANCELLED, reason="payment_canceled")
    return Booking.objects.get(pk=booking_id)


def record_refund(*, booking_id: int, refund_id: str) -> Booking:
    """A refund made outside the product (Stripe dashboard): succeeded -> refunded.

    The tickets stay out of the pool; staff return them from admin if wanted.
    """
    Booking.objects.filter(pk=booking_id, status=Status.SUCCEEDED).update(
        status=Status.REFUNDED, refund_id=refund_id, finished_at=timezone.now()
    )
    return Booking.objects.get(pk=booking_id)


def overdue_hold_ids(*, grace_seconds: float = 2.0, limit: int = 500) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        Booking.objects.filter(status=Status.PROCESSING, expires_at__lt=cutoff)
        .order_by("expires_at")
        .values_list("id", flat=True)[:limit]
    )


def pending_refund_ids() -> list[int]:
    """Late payments still owed a refund whose call has not been attempted
    (or failed cleanly). A claim left by a crashed worker is not retried
    blindly: staff see it in admin, since the refund may have gone through."""
    return list(Booking.objects.filter(needs_refund=True, refund_claimed_at__isnull=True).values_list("id", flat=True))
