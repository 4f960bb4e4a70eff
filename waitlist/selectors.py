"""A fan's place in line, as API.md's QueueStatus."""

import math
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone

from ticketing.models import Event
from ticketing.selectors import event_inventory, event_status
from waitlist.models import AccessToken, QueueEntry, WaitingRoom
from waitlist.tokens import sign_token


@dataclass(frozen=True)
class FanPlace:
    """What a live connection keeps to work out its fan's status from a broadcast."""

    entry_id: int
    number: int | None
    state: str


def get_entry(*, event: Event, fan) -> QueueEntry | None:
    return QueueEntry.objects.filter(event=event, fan=fan).exclude(state=QueueEntry.State.LEFT).first()


def queue_status(*, entry: QueueEntry) -> dict:
    """The QueueStatus of API.md, read from Postgres."""
    event = entry.event
    room = WaitingRoom.objects.get(event_id=event.pk)
    now = timezone.now()
    status = {
        "event": event.pk,
        "status": "waiting",
        "position": None,
        "ahead": None,
        "eta_seconds": None,
        "access_token": None,
        "token_expires_at": None,
        "stream_url": reverse("queue-stream", kwargs={"event_id": event.pk}),
    }
    if entry.state in (QueueEntry.State.ADMITTED, QueueEntry.State.BOOKED):
        token = AccessToken.objects.filter(entry=entry).order_by("-issued_at").first()
        if token is None:
            return status
        if token.used_at is not None or entry.state == QueueEntry.State.BOOKED:
            status["status"] = "booked"
        elif token.expires_at <= now:
            status["status"] = "expired"
        else:
            status["status"] = "admitted"
            status["access_token"] = sign_token(token_id=token.id, event_id=event.pk, fan_id=entry.fan_id)
            status["token_expires_at"] = token.expires_at.isoformat()
        return status

    inventory = event_inventory(event_id=event.pk)
    if event_status(event=event, available=inventory.available, held=inventory.held, now=now) in (
        "sold_out",
        "closed",
    ):
        status["status"] = "closed"
        return status
    if entry.number is not None:
        position = max(entry.number - room.serving_number, 1)
        status["position"] = position
        status["ahead"] = position - 1
        status["eta_seconds"] = eta_seconds(position=position, rate=room.admission_rate)
    return status


def eta_seconds(*, position: int, rate: float) -> int | None:
    """Seconds until this position is admitted at the measured rate; None until measured."""
    if rate <= 0:
        return None
    return max(0, math.ceil((position - 1) / rate))
