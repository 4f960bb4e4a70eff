"""The only module that talks to Stripe.

Configured from settings: real Stripe when STRIPE_SECRET_KEY is set, else the
local Stripe server at STRIPE_API_BASE. Callers never hold a database row
lock while calling these functions.
"""

import logging
from dataclasses import dataclass
from decimal import Decimal

import requests
import requests.adapters
import stripe
from django.conf import settings

log = logging.getLogger(__name__)

# Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
}

PaymentError = stripe.StripeError


def _shared_session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _client() -> stripe.StripeClient:
    kwargs = {
        # One session for every thread: the client would otherwise keep a
        # session per thread, and under ASGI each request has a thread of its
        # own, so every call to Stripe opened a new connection.
        "http_client": stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS, session=_shared_session()),
        "max_network_retries": 1,
    }
    if settings.STRIPE_API_BASE:
        kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, **kwargs)


_CLIENT: stripe.StripeClient | None = None


def client() -> stripe.StripeClient:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = _client()
    return _CLIENT


def minor_units(amount: Decimal, currency: str) -> int:
    if currency.upper() in ZERO_DECIMAL:
        return int(amount)
    return int((amount * 100).to_integral_value())


def create_payment_intent(
    *, booking_id: int, amount: Decimal, currency: str, event_name: str, attempt: int = 1
) -> tuple[str, str]:
    """Create the booking's PaymentIntent (one per attempt); returns (id, client_secret)."""
    intent = client().v1.payment_intents.create(
        params={
            "amount": minor_units(amount, currency),
            "currency": currency.lower(),
            "metadata": {"booking_id": str(booking_id), "event": event_name[:400]},
            "payment_method_types": ["card"],
        },
        options={"idempotency_key": f"booking-{booking_id}-payment-intent-{attempt}"},
    )
    return intent.id, intent.client_secret


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    currency: str
    booking_id: str


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent: str
    amount: int
    amount_refunded: int
    refund_id: str


def retrieve_status(payment_intent_id: str) -> str:
    return client().v1.payment_intents.retrieve(payment_intent_id).status


def retrieve_payment_intent(payment_intent_id: str) -> Intent | None:
    """The intent as Stripe has it now; None if Stripe has no such intent."""
    try:
        intent = client().v1.payment_intents.retrieve(payment_intent_id).to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise
    return Intent(
        id=intent["id"],
        status=intent["status"],
        amount=int(intent["amount"]),
        currency=str(intent["currency"]).upper(),
        booking_id=str((intent.get("metadata") or {}).get("booking_id", "")),
    )


def retrieve_charge(charge_id: str) -> Charge | None:
    if not charge_id:
        return None
    try:
        charge = client().v1.charges.retrieve(charge_id).to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise
    refunds = (charge.get("refunds") or {}).get("data") or []
    return Charge(
        id=charge["id"],
        payment_intent=charge.get("payment_intent") or "",
        amount=int(charge["amount"]),
        amount_refunded=int(charge.get("amount_refunded") or 0),
        refund_id=refunds[0]["id"] if refunds else "",
    )


def cancel_payment_intent(payment_intent_id: str) -> str:
    """Cancel the intent; returns its status afterwards.

    "canceled" means no money can arrive any more. If Stripe refuses because
    the intent already succeeded (or is processing), that status is returned
    instead so the caller can honour the payment.
    """
    try:
        return client().v1.payment_intents.cancel(payment_intent_id).status
    except stripe.InvalidRequestError:
        return retrieve_status(payment_intent_id)


def refund_payment_intent(*, payment_intent_id: str, booking_id: int) -> str:
    """Refund the whole payment; returns the refund id."""
    refund = client().v1.refunds.create(
        params={"payment_intent": payment_intent_id, "metadata": {"booking_id": str(booking_id)}},
        options={"idempotency_key": f"booking-{booking_id}-refund"},
    )
    return refund.id


def pay_with_test_card(*, payment_intent_id: str, number: str, exp_month: int, exp_year: int, cvc: str) -> str:
    """Local Stripe only: what Stripe.js does in a browser, done by the server.

    The local server does not accept `confirm` with a payment_method, so the
    method is attached with `modify` first. Returns the intent's status.
    """
    if not settings.STRIPE_LOCAL:
        raise RuntimeError("card numbers are only accepted against a local Stripe server")
    c = client()
    method = c.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc}}
    )
    c.v1.payment_intents.update(payment_intent_id, params={"payment_method": method.id})
    try:
        return c.v1.payment_intents.confirm(payment_intent_id).status
    except stripe.CardError:
        return "requires_payment_method"
