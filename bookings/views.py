"""Fans' bookings: reserve from the waiting room, follow, cancel."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from bookings import services
from bookings.models import Booking
from payments.checkout import check_payable
from ticketing.errors import ServiceError
from ticketing.models import Event
from waitlist.views import login_then

BOOKINGS_SHOWN = 200


@require_POST
def create(request, event_id: int):
    event = get_object_or_404(Event, pk=event_id)
    if not request.user.is_authenticated:
        return login_then(request, "event-detail", event_id=event.pk)
    try:
        quantity = int(request.POST.get("quantity", ""))
    except ValueError:
        messages.error(request, f"Choose between 1 and {event.max_per_order} tickets.")
        return redirect("waiting-room", event_id=event.pk)
    try:
        booking = services.book_tickets(
            event=event, fan=request.user, quantity=quantity, access_token=request.POST.get("access_token", "")
        )
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("waiting-room", event_id=event.pk)
    return redirect("booking-pay", booking_id=booking.pk)


@login_required
def booking_list(request):
    bookings = Booking.objects.filter(fan=request.user).select_related("event").order_by("-created_at", "-id")
    return render(request, "bookings/booking_list.html", {"bookings": bookings[:BOOKINGS_SHOWN]})


@login_required
def booking_detail(request, booking_id: int):
    # Filtering by fan makes another fan's booking a plain 404.
    booking = get_object_or_404(Booking.objects.select_related("event"), pk=booking_id, fan=request.user)
    try:
        check_payable(booking=booking)
        payable = True
    except ServiceError:
        payable = False
    return render(
        request,
        "bookings/booking_detail.html",
        {
            "booking": booking,
            "payable": payable,
            # Poll while a webhook may still change the status the fan sees.
            "polling": booking.status == Booking.Status.PROCESSING or payable,
            "poll_config": {
                "url": reverse("api-booking", kwargs={"booking_id": booking.pk}),
                "status": booking.status,
                "until": int(booking.expires_at.timestamp() * 1000),
            },
        },
    )


@require_POST
def cancel(request, booking_id: int):
    if not request.user.is_authenticated:
        return login_then(request, "booking-detail", booking_id=booking_id)
    try:
        services.cancel_booking(booking_id=booking_id, fan=request.user)
    except ServiceError as exc:
        if exc.status == 404:
            raise Http404(exc.detail) from None
        messages.error(request, exc.detail)
    else:
        messages.success(request, "Booking cancelled. The tickets went back to the pool.")
    return redirect("booking-detail", booking_id=booking_id)
