from django.conf import settings
from django.urls import reverse
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from bookings import services
from bookings.models import Booking
from config.api_input import json_object, required_int
from ticketing.errors import NotFound, ServiceError
from ticketing.models import Event


class BookingThrottle(UserRateThrottle):
    scope = "bookings"

    def allow_request(self, request, view):
        # Only creating bookings is limited; reading them is cheap.
        return request.method != "POST" or super().allow_request(request, view)


def booking_json(booking: Booking) -> dict:
    return {
        "id": booking.pk,
        "event": booking.event_id,
        "quantity": booking.quantity,
        "amount": str(booking.amount),
        "currency": booking.currency,
        "status": booking.status,
        "expires_at": booking.expires_at.isoformat(),
        "pay_url": reverse("booking-pay", kwargs={"booking_id": booking.pk}),
        "payment": {
            "provider": "stripe",
            "payment_intent": booking.payment_intent_id or None,
            "client_secret": booking.client_secret or None,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        },
    }


@api_view(["GET", "POST"])
@throttle_classes([BookingThrottle])
def bookings(request):
    if request.method == "GET":
        mine = Booking.objects.filter(fan=request.user).order_by("-created_at", "-id")[:200]
        return Response([booking_json(b) for b in mine])
    data = json_object(request.data)
    event_id = required_int(data, "event")
    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        raise NotFound("No such event.")
    access_token = data.get("access_token")
    if not isinstance(access_token, str):
        raise ServiceError("'access_token' is required: the token you were given when admitted.", code="invalid")
    booking = services.book_tickets(
        event=event, fan=request.user, quantity=data.get("quantity"), access_token=access_token
    )
    return Response(booking_json(booking), status=201)


@api_view(["GET"])
def booking_detail(request, booking_id: int):
    return Response(booking_json(get_object_or_404(Booking, pk=booking_id, fan=request.user)))


@api_view(["POST"])
def booking_cancel(request, booking_id: int):
    return Response(booking_json(services.cancel_booking(booking_id=booking_id, fan=request.user)))
