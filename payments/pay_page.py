"""The booking's pay page (bookings/api.py links to it as `pay_url`).

With real Stripe keys the browser pays through Stripe.js (Payment Element);
against a local Stripe server the page takes a test card and the server pays
with it. Either way the booking changes only when the webhook arrives, so
both end on the booking's status page, which polls.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from bookings.models import Booking
from payments import checkout
from ticketing.errors import ServiceError

TEST_CARDS = [
    ("4242 4242 4242 4242", "succeeds"),
    ("4000 0000 0000 0341", "is declined"),
]

# What the fan is told after the local server answered; the webhook decides the booking.
OUTCOMES = {
    "succeeded": (messages.SUCCESS, "Payment received. Confirming your tickets…"),
    "processing": (messages.INFO, "Your payment is processing. This page updates when it completes."),
    "requires_payment_method": (
        messages.ERROR,
        "Your card was declined, so your tickets are going back on sale. You can try another card now: "
        "if tickets are left when it goes through they are yours, otherwise you are refunded in full.",
    ),
    "requires_action": (
        messages.ERROR,
        "This card needs 3-D Secure, which the test form cannot do. Try another card.",
    ),
}


class TestCardForm(forms.Form):
    # Types only; checkout.check_test_card decides what is a valid card.
    card_number = forms.CharField(
        max_length=30,
        widget=forms.TextInput(
            attrs={"autocomplete": "cc-number", "inputmode": "numeric", "placeholder": "4242 4242 4242 4242"}
        ),
    )
    exp_month = forms.IntegerField(
        label="Expiry month", widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-month", "placeholder": "MM"})
    )
    exp_year = forms.IntegerField(
        label="Expiry year", widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-year", "placeholder": "YYYY"})
    )
    cvc = forms.CharField(
        label="CVC",
        max_length=4,
        widget=forms.TextInput(attrs={"autocomplete": "cc-csc", "inputmode": "numeric", "placeholder": "123"}),
    )


# never_cache: the page carries the PaymentIntent's client secret.
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def pay(request, booking_id: int):
    booking = get_object_or_404(Booking.objects.select_related("event"), pk=booking_id, fan=request.user)
    form = TestCardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            outcome = checkout.pay_with_test_card(booking=booking, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.detail)
        else:
            level, text = OUTCOMES.get(outcome, (messages.INFO, f"Payment status: {outcome}."))
            messages.add_message(request, level, text)
            return redirect("booking-detail", booking_id=booking.pk)

    try:
        checkout.check_payable(booking=booking)
        refusal = ""
    except ServiceError as exc:
        refusal = exc.detail
    return render(
        request,
        "payments/pay.html",
        {
            "booking": booking,
            "refusal": refusal,
            "form": form,
            "stripe_local": settings.STRIPE_LOCAL,
            "test_cards": TEST_CARDS,
            "stripe_config": {
                "publishableKey": settings.STRIPE_PUBLISHABLE_KEY,
                "clientSecret": booking.client_secret,
                "returnUrl": request.build_absolute_uri(reverse("booking-detail", kwargs={"booking_id": booking.pk})),
            },
        },
    )
