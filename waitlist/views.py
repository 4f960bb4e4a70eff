"""The waiting room as fans see it: join, wait (live over SSE), leave."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ticketing.errors import ServiceError
from ticketing.models import Event
from waitlist import services
from waitlist.api import QueueThrottle
from waitlist.models import QueueEntry
from waitlist.selectors import get_entry, queue_status


def login_then(request, url_name: str, **kwargs):
    """Send an anonymous POST to log in, then back to a page (a POST-only URL cannot be `next`)."""
    return redirect_to_login(reverse(url_name, kwargs=kwargs))


def too_many_moves(request, event: Event):
    """The API's per-fan limit on joining and leaving (waitlist.api.QueueThrottle) holds on the pages too."""
    throttle = QueueThrottle()
    if throttle.allow_request(request, None):
        return None
    wait = int(throttle.wait() or 0) + 1
    messages.error(request, f"You have joined and left this line too often; try again in {wait} seconds.")
    response = redirect("event-detail", event_id=event.pk)
    response.status_code = 303
    response["Retry-After"] = str(wait)
    return response


@require_POST
def join(request, event_id: int):
    event = get_object_or_404(Event, pk=event_id)
    if not request.user.is_authenticated:
        return login_then(request, "event-detail", event_id=event.pk)
    if refused := too_many_moves(request, event):
        return refused
    try:
        entry, _ = services.join_queue(event=event, fan=request.user)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("event-detail", event_id=event.pk)
    if entry.state == QueueEntry.State.BOOKED:
        # The page offers "Join the line again" for a booking that ended
        # without tickets; say why this one did not put the fan back in line.
        messages.info(
            request, "Your booking from this turn is still held or paid, so you cannot join the line again for now."
        )
    return redirect("waiting-room", event_id=event.pk)


# never_cache: the page carries the fan's access token once admitted.
@never_cache
@login_required
def waiting_room(request, event_id: int):
    event = get_object_or_404(Event, pk=event_id)
    entry = get_entry(event=event, fan=request.user)
    if entry is None:
        messages.info(request, "You are not in line for this event yet.")
        return redirect("event-detail", event_id=event.pk)
    status = queue_status(entry=entry)
    state = view_state(status)
    return render(
        request,
        "waitlist/waiting_room.html",
        {
            "event": event,
            "status": status,
            "view_state": state,
            # A booked turn whose booking still holds or bought tickets: no
            # "join again" button (joining would be refused).
            "can_join_again": state == "booked" and services.turn_is_over(entry),
            "quantities": range(1, event.max_per_order + 1),
            "poll_url": reverse("api-queue", kwargs={"event_id": event.pk}),
        },
    )


def view_state(status: dict) -> str:
    """Which panel the page shows; the page's script applies the same rule to live updates."""
    if status["status"] == "waiting" and status["position"] is None:
        return "prequeue"
    return status["status"]


@require_POST
def leave(request, event_id: int):
    event = get_object_or_404(Event, pk=event_id)
    if not request.user.is_authenticated:
        return login_then(request, "event-detail", event_id=event.pk)
    if refused := too_many_moves(request, event):
        return refused
    try:
        services.leave_queue(event=event, fan=request.user)
    except ServiceError as exc:
        messages.info(request, exc.detail)
    else:
        messages.success(request, "You left the line.")
    return redirect("event-detail", event_id=event.pk)
