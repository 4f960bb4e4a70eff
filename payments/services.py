"""Stripe webhooks: verified, recorded once, applied idempotently.

Events are hints. The event id is inserted under a unique key in the same
transaction as its effects, so a delivery that is repeated (even
concurrently) changes nothing, and a delivery whose effects fail leaves no
record and gets a 5xx, so Stripe sends it again.
"""

import json
import logging

import stripe
from django.conf import settings
from django.db import connection, transaction

from bookings import services as bookings
from bookings.models import Booking
from ticketing.errors import ServiceError

log = logging.getLogger(__name__)


def verify_event(*, payload: bytes, signature: str | None) -> dict:
    """Check the Stripe-Signature header and the event's shape; returns the event.

    Anything unsigned or malformed is a 400 (Stripe stops retrying a 4xx
    only after its retry schedule, but such a delivery can never succeed).
    """
    if not signature:
        raise ServiceError("Missing Stripe-Signature header.", code="bad_signature")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=300
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise ServiceError("The Stripe signature does not match this payload.", code="bad_signature") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise ServiceError("The event is not JSON.", code="invalid") from None
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not (
        isinstance(obj, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event.get("type"), str)
        and isinstance(obj, dict)
        and isinstance(obj.get("id", ""), str)
        and isinstance(obj.get("payment_intent") or "", str)
        and isinstance(obj.get("metadata") or {}, dict)
    ):
        raise ServiceError("Not a Stripe event this endpoint understands.", code="invalid")
    return event


def handle_event(*, event: dict) -> str:
    """Apply one verified event; returns the outcome recorded with it."""
    obj = (event.get("data") or {}).get("object") or {}
    intent_id = _payment_intent_id(event["type"], obj)
    refund_owed = None
    with transaction.atomic(durable=True):
        if not _record_once(event=event, intent_id=intent_id):
            return "duplicate"
        booking = _find_booking(intent_id=intent_id, obj=obj)
        if booking is None:
            outcome = "ignored: no booking for this payment intent" if intent_id else "ignored: not a payment event"
            if intent_id:
                log.warning("Stripe event %s for unknown intent %s", event["id"], intent_id)
        else:
            outcome = _apply(event_type=event["type"], booking=booking, obj=obj)
            if outcome == "needs_refund":
                refund_owed = booking.pk
        connection.cursor().execute(
            "UPDATE payments_stripeevent SET outcome = %s WHERE id = %s", [outcome[:255], event["id"]]
        )
    if refund_owed is not None:
        bookings.refund_late_payment(booking_id=refund_owed)
    return outcome


def _payment_intent_id(event_type: str, obj: dict) -> str:
    if event_type.startswith("payment_intent."):
        return obj.get("id") or ""
    if event_type.startswith("charge."):
        return obj.get("payment_intent") or ""
    return ""


def _record_once(*, event: dict, intent_id: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_stripeevent (id, type, payment_intent_id, received_at, outcome, payload) "
            "VALUES (%s, %s, %s, now(), '', %s) ON CONFLICT (id) DO NOTHING RETURNING id",
            [event["id"], event["type"][:100], intent_id[:255], json.dumps(event)],
        )
        return cursor.fetchone() is not None


def _find_booking(*, intent_id: str, obj: dict) -> Booking | None:
    if not intent_id:
        return None
    booking = (
        Booking.objects.filter(payment_intent_id=intent_id).first()
        or Booking.objects.filter(previous_payment_intents__contains=[intent_id]).first()
    )
    if booking is None:
        # The intent was created but the booking never stored its id (crash
        # between the two): the metadata still names it.
        booking_id = str((obj.get("metadata") or {}).get("booking_id", ""))
        if booking_id.isdigit() and obj.get("object") == "payment_intent":
            booking = Booking.objects.filter(pk=int(booking_id), payment_intent_id="").first()
            if booking is not None:
                Booking.objects.filter(pk=booking.pk, payment_intent_id="").update(payment_intent_id=intent_id)
    return booking


def _apply(*, event_type: str, booking: Booking, obj: dict) -> str:
    if event_type == "payment_intent.succeeded":
        booking = bookings.record_payment_succeeded(booking_id=booking.pk)
        return "needs_refund" if booking.needs_refund else booking.status
    if event_type == "payment_intent.payment_failed":
        return bookings.record_payment_failed(booking_id=booking.pk).status
    if event_type == "payment_intent.canceled":
        return bookings.record_payment_canceled(booking_id=booking.pk).status
    if event_type == "charge.refunded":
        refunds = (obj.get("refunds") or {}).get("data") or [{}]
        return bookings.record_refund(booking_id=booking.pk, refund_id=refunds[0].get("id") or "").status
    return f"ignored: {event_type}"
