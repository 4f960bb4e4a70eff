"""Stripe webhooks: verified, recorded once, checked against Stripe, applied idempotently.

Events are hints. Before acting, the PaymentIntent (or charge) is read back
from Stripe, outside any transaction, and the booking moves by what Stripe
says now, not by what the event claims. The event id is inserted under a
unique key in the same transaction as its effects, so a delivery that is
repeated (even concurrently) changes nothing, and a delivery whose effects
fail leaves no record and gets a 5xx, so Stripe sends it again.
"""

import json
import logging
import re

import stripe
from django.conf import settings
from django.db import connection, transaction

from bookings import services as bookings
from bookings.models import Booking
from config.api_input import is_storable_text
from payments import gateway
from ticketing.errors import ServiceError

log = logging.getLogger(__name__)

HANDLED = {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "charge.refunded"}


def verify_event(*, payload: bytes, signature: str | None) -> dict:
    """Check the Stripe-Signature header and the event's shape; returns the event.

    Anything unsigned or malformed is a 400: such a delivery can never succeed.
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
    except (ValueError, RecursionError):
        raise ServiceError("The event is not JSON Stripe would send.", code="invalid") from None
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not (
        isinstance(obj, dict)
        and _short_text(event.get("id"), allow_empty=False)
        and _short_text(event.get("type"), allow_empty=False)
        and _short_text(obj.get("id", ""))
        and _short_text(obj.get("payment_intent") or "")
    ):
        raise ServiceError("Not a Stripe event this endpoint understands.", code="invalid")
    return event


def _short_text(value, *, allow_empty: bool = True) -> bool:
    return isinstance(value, str) and (allow_empty or value) and len(value) <= 255 and is_storable_text(value)


def handle_event(*, event: dict, raw: str) -> str:
    """Apply one verified event; returns the outcome recorded with it."""
    obj = event["data"]["object"]
    event_type = event["type"]
    intent_id = _payment_intent_id(event_type, obj)
    # What Stripe says now; read before any row is locked. A failure to
    # reach Stripe propagates (500) so the event is delivered again.
    intent = gateway.retrieve_payment_intent(intent_id) if intent_id and event_type in HANDLED else None
    refund_owed = None
    with transaction.atomic(durable=True):
        if not _record_once(event=event, intent_id=intent_id, raw=raw):
            return "duplicate"
        if event_type not in HANDLED:
            outcome = f"ignored: {event_type}"
        elif intent is None:
            outcome = "ignored: no such payment intent at Stripe"
        else:
            booking = _find_booking(intent=intent)
            if booking is None:
                log.warning("Stripe event %s for intent %s, which no booking has", event["id"], intent_id)
                outcome = "ignored: no booking for this payment intent"
            else:
                outcome = _apply(event_type=event_type, booking=booking, intent=intent, obj=obj)
                if outcome == "needs_refund":
                    refund_owed = booking.pk
        with connection.cursor() as cursor:
            cursor.execute("UPDATE payments_stripeevent SET outcome = %s WHERE id = %s", [outcome[:255], event["id"]])
    if refund_owed is not None:
        bookings.refund_late_payment(booking_id=refund_owed)
    return outcome


def _payment_intent_id(event_type: str, obj: dict) -> str:
    if event_type.startswith("payment_intent."):
        return obj.get("id") or ""
    if event_type.startswith("charge."):
        return obj.get("payment_intent") or ""
    return ""


def _record_once(*, event: dict, intent_id: str, raw: str) -> bool:
    # The raw body is kept as text: Stripe's JSON may escape characters
    # (\u0000) that a jsonb column refuses.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_stripeevent (id, type, payment_intent_id, received_at, outcome, payload) "
            "VALUES (%s, %s, %s, now(), '', %s) ON CONFLICT (id) DO NOTHING RETURNING id",
            [event["id"], event["type"][:100], intent_id, raw],
        )
        return cursor.fetchone() is not None


def _find_booking(*, intent: gateway.Intent) -> Booking | None:
    booking = (
        Booking.objects.filter(payment_intent_id=intent.id).first()
        # payment_attempts > 1 lets Postgres use the partial index.
        or Booking.objects.filter(payment_attempts__gt=1, previous_payment_intents__contains=[intent.id]).first()
    )
    if booking is None and re.fullmatch(r"[0-9]{1,18}", intent.booking_id):
        # The intent was created but the booking never stored its id (crash
        # between the two). The metadata is read from Stripe, not the event.
        booking = Booking.objects.filter(pk=int(intent.booking_id), payment_intent_id="").first()
        if booking is not None:
            Booking.objects.filter(pk=booking.pk, payment_intent_id="").update(payment_intent_id=intent.id)
    return booking


def _apply(*, event_type: str, booking: Booking, intent: gateway.Intent, obj: dict) -> str:
    """Move the booking by the intent's status at Stripe (success wins)."""
    if intent.status == "succeeded":
        if (intent.amount, intent.currency) != (
            gateway.minor_units(booking.amount, booking.currency),
            booking.currency,
        ):
            log.error("intent %s paid %s %s for booking %s", intent.id, intent.amount, intent.currency, booking.pk)
            return "ignored: paid amount does not match the booking"
        if event_type == "charge.refunded":
            return _apply_refund(booking=booking, obj=obj)
        booking = bookings.record_payment_succeeded(booking_id=booking.pk)
        return "needs_refund" if booking.needs_refund else booking.status
    if event_type == "payment_intent.payment_failed" and intent.status in ("requires_payment_method", "canceled"):
        return bookings.record_payment_failed(booking_id=booking.pk).status
    if event_type == "payment_intent.canceled" and intent.status == "canceled":
        return bookings.record_payment_canceled(booking_id=booking.pk).status
    return f"ignored: {event_type} while the intent is {intent.status} at Stripe"


def _apply_refund(*, booking: Booking, obj: dict) -> str:
    charge = gateway.retrieve_charge(obj.get("id") or "")
    if charge is None or charge.payment_intent != booking.payment_intent_id:
        return "ignored: no such charge for this booking at Stripe"
    if charge.amount_refunded < charge.amount:
        return f"partial refund of {charge.amount_refunded} recorded; booking unchanged"
    return bookings.record_refund(booking_id=booking.pk, refund_id=charge.refund_id).status
