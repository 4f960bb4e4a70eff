from django.contrib.auth import get_user_model
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from config.api_input import json_object, required_string
from ticketing import accounts
from ticketing.selectors import event_status, events_with_inventory

# The email is stored as the username too, whose column is shorter than the
# 254 characters an address may have: a longer one would be a DataError (500).
EMAIL_MAX_LENGTH = min(254, get_user_model()._meta.get_field("username").max_length)


class AccountThrottle(SimpleRateThrottle):
    """Per client address: slows password guessing and account farming."""

    scope = "accounts"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([AccountThrottle])
def create_account(request):
    data = json_object(request.data)
    user, token = accounts.create_fan(
        email=required_string(data, "email", max_length=EMAIL_MAX_LENGTH), password=required_string(data, "password")
    )
    return Response({"id": user.pk, "email": user.email, "token": token}, status=201)


@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([AccountThrottle])
def obtain_token(request):
    data = json_object(request.data)
    token = accounts.token_for_credentials(
        email=required_string(data, "email", max_length=254),
        password=required_string(data, "password"),
        request=request,
    )
    return Response({"token": token})


def event_json(event) -> dict:
    return {
        "id": event.pk,
        "slug": event.slug,
        "name": event.name,
        "venue": event.venue,
        "starts_at": event.starts_at.isoformat(),
        "on_sale_at": event.on_sale_at.isoformat(),
        "price": str(event.price),
        "currency": event.currency,
        "capacity": event.capacity,
        "available": event.total_available,
        "max_per_order": event.max_per_order,
        "status": event_status(event=event, available=event.total_available, held=event.total_held),
    }


@api_view(["GET"])
@permission_classes([AllowAny])
def event_list(request):
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(events_with_inventory().order_by("starts_at", "id"), request)
    return paginator.get_paginated_response([event_json(e) for e in page])


@api_view(["GET"])
@permission_classes([AllowAny])
def event_detail(request, event_id: int):
    return Response(event_json(get_object_or_404(events_with_inventory(), pk=event_id)))
