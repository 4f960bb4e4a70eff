from rest_framework.decorators import api_view, throttle_classes
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from ticketing.errors import NotFound
from ticketing.models import Event
from waitlist import services
from waitlist.selectors import get_entry, queue_status


class QueueThrottle(UserRateThrottle):
    """Joining and leaving, per fan. Each rejoin takes a new number at the
    back, and a position counts the numbers ahead, so a leave/rejoin loop
    would push everyone behind further back."""

    scope = "queue"

    def allow_request(self, request, view):
        return request.method == "GET" or super().allow_request(request, view)


@api_view(["GET", "POST", "DELETE"])
@throttle_classes([QueueThrottle])
def queue(request, event_id: int):
    event = get_object_or_404(Event, pk=event_id)
    if request.method == "POST":
        entry, created = services.join_queue(event=event, fan=request.user)
        return Response(queue_status(entry=entry), status=201 if created else 200)
    if request.method == "DELETE":
        services.leave_queue(event=event, fan=request.user)
        return Response(status=204)
    entry = get_entry(event=event, fan=request.user)
    if entry is None:
        raise NotFound("You are not in line for this event.", code="not_in_queue")
    return Response(queue_status(entry=entry))


def stream_needs_asgi(request, event_id: int):
    from django.http import JsonResponse

    return JsonResponse(
        {"error": "stream_unavailable", "detail": "The live stream is served by the ASGI server (make run)."},
        status=503,
    )
