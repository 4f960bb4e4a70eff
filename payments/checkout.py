"""Paying for a booking from the site's own pay page.

With real Stripe keys the browser pays through Stripe.js and nothing here
runs. Against a local Stripe server there is no Stripe.js, so the pay page
posts a test card to the server, which does what Stripe.js would do. Either
way the booking only changes when Stripe's webhook arrives.
"""

import re

import stripe
from django.conf import settings
from django.utils import timezone

from bookings.models import Booking
from bookings.services import fan_moved_on, restart_payment
from payments import gateway
from ticketing.errors import Conflict, Forbidden, ServiceError, Unavailable
from waitlist.models import QueueEntry


def check_payable(*, booking: Booking) -> None:
    """Refuse (409 not_payable) unless the booking's PaymentIntent can still take money.

    A `failed` booking (card declined) stays payable until its hold would
    have expired: the PaymentIntent is still open, and money that arrives is
    handled as a late payment (tickets retaken if the pool has them, else
    refunded). Not once the fan is back in line or has another order for
    the event: that money could only be refunded.
    """
    if not booking.payment_intent_id:
        raise Conflict("This booking has no payment to make.", code="not_payable")
    if booking.status == Booking.Status.PROCESSING:
        return
    if booking.status == Booking.Status.FAILED and booking.expires_at > timezone.now():
        entry = QueueEntry.objects.filter(event_id=booking.event_id, fan_id=booking.fan_id).first()
        if fan_moved_on(booking=booking, entry=entry):
            # The money would only be refunded (see _take_late_payment).
            raise Conflict(
                "This booking cannot be paid any more: you are back in line or have another order for this event.",
                code="not_payable",
            )
        return
    raise Conflict(f"This booking cannot be paid: its status is {booking.status}.", code="not_payable")


def check_test_card(*, card_number: str, exp_month: int, exp_year: int, cvc: str) -> tuple[str, int, int, str]:
    """Validate a typed-in card; returns (number, month, four-digit year, cvc)."""
    number = re.sub(r"[\s-]", "", card_number or "")
    if not re.fullmatch(r"\d{12,19}", number):
        raise ServiceError("Enter the card number as 12 to 19 digits.", code="invalid_card")
    if not 1 <= exp_month <= 12:
        raise ServiceError("The expiry month must be between 1 and 12.", code="invalid_card")
    if 0 <= exp_year < 100:  # "30" on the card means 2030
        exp_year += 2000
    today = timezone.now().date()
    if not today.year <= exp_year <= today.year + 50 or (exp_year, exp_month) < (today.year, today.month):
        raise ServiceError("This card has expired or the expiry year is not valid.", code="invalid_card")
    cvc = (cvc or "").strip()
    if not re.fullmatch(r"\d{3,4}", cvc):
        raise ServiceError("The CVC is the 3 or 4 digits on the back of the card.", code="invalid_card")
    return number, exp_month, exp_year, cvc


def pay_with_test_card(*, booking: Booking, card_number: str, exp_month: int, exp_year: int, cvc: str) -> str:
    """Pay the booking's PaymentIntent with a test card; returns the intent's status.

    Local Stripe only. The caller must have loaded `booking` for the fan who
    is paying (the pay page looks it up by id *and* fan). Takes no lock and
    writes nothing: the webhook that follows moves the booking, idempotently,
    so a repeated or concurrent payment attempt is harmless.
    """
    if not settings.STRIPE_LOCAL:
        raise Forbidden("Card numbers are only accepted by the local test payment server.", code="not_local")
    check_payable(booking=booking)
    number, exp_month, exp_year, cvc = check_test_card(
        card_number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc
    )
    try:
        if booking.status == Booking.Status.FAILED:
            # Another card after a decline: a fresh intent (see restart_payment).
            booking = restart_payment(booking=booking)
            if booking.status != Booking.Status.FAILED:
                return "succeeded" if booking.status == Booking.Status.SUCCEEDED else booking.status
        return gateway.pay_with_test_card(
            payment_intent_id=booking.payment_intent_id, number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc
        )
    except stripe.InvalidRequestError:
        # The intent moved on at Stripe (paid, cancelled) since the page loaded;
        # localstripe also refuses a second confirm after a declined card.
        raise Conflict(
            "This booking cannot take a payment now: it may already be paid or closed. Its page shows where it stands.",
            code="not_payable",
        ) from None
    except gateway.PaymentError:
        raise Unavailable(
            "The payment server could not take this payment right now. Please try again.", code="payment_unavailable"
        ) from None
