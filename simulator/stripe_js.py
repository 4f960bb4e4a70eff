"""Paying the way a browser with Stripe.js does, against the local Stripe server.

Stripe.js gets the booking's client secret and the publishable key, creates
a PaymentMethod from the card the fan typed and confirms the PaymentIntent
with it, straight from the browser: the product's server never sees the
card. localstripe differs from Stripe in two ways that shape this:

- it does not implement `confirm` with a `payment_method` argument, so the
  method is attached to the intent with an update first, then confirmed
  (what payments.gateway.pay_with_test_card does server-side for the site's
  test-card form);
- it takes the publishable key (`key` in the form, as Stripe.js sends it)
  only on a few routes, not on these, so the browser also sends a placeholder
  secret-style key. localstripe accepts any `sk_` key; this is not the
  product's secret and nothing here reads the product's settings.
"""

import time

from simulator.client import Answer, Client

PLACEHOLDER_KEY = "sk_test_simulated_browser"


def stripe_headers() -> dict:
    return {"Authorization": f"Bearer {PLACEHOLDER_KEY}"}


def intent_id_from_client_secret(client_secret: str) -> str:
    # Stripe.js reads the intent's id from its client secret ("pi_..._secret_...").
    return client_secret.split("_secret_", 1)[0]


async def pay_with_card(*, stripe: Client, payment: dict, card_number: str) -> Answer:
    """Create a PaymentMethod and confirm the booking's intent with it.

    Returns the last Stripe answer: 200 with the intent (`status` succeeded),
    402 `card_declined`, or 400 when the intent can no longer be paid
    (cancelled after the hold expired).
    """
    key = payment["publishable_key"]
    intent_id = intent_id_from_client_secret(payment["client_secret"])
    if intent_id != payment["payment_intent"]:
        return Answer(0, {}, "client_secret_mismatch")
    method = await stripe.call(
        "POST",
        "/v1/payment_methods",
        route="POST /v1/payment_methods",
        data={
            "type": "card",
            "card[number]": card_number,
            "card[exp_month]": "12",
            "card[exp_year]": str(time.gmtime().tm_year + 2),
            "card[cvc]": "123",
            "key": key,
        },
    )
    if method.status != 200:
        return method
    attached = await stripe.call(
        "POST",
        f"/v1/payment_intents/{intent_id}",
        route="POST /v1/payment_intents/{id}",
        data={"payment_method": method.body["id"], "key": key},
    )
    if attached.status != 200:
        return attached
    return await stripe.call(
        "POST",
        f"/v1/payment_intents/{intent_id}/confirm",
        route="POST /v1/payment_intents/{id}/confirm",
        data={"key": key},
    )
