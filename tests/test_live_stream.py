"""The live stream keeps a fan's screen right even when news is lost (real uvicorn, real Redis)."""

import time

import pytest
from django.utils import timezone

from tests.factories import FanFactory, make_event
from tests.fan_client import FanClient
from waitlist import services
from waitlist.models import QueueEntry, WaitingRoom

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def a_paused_line(*, fans_ahead: int):
    """An on-sale event whose room is paused (nobody is admitted) with `fans_ahead` fans in line."""
    event = make_event(tickets=10)
    WaitingRoom.objects.filter(event=event).update(opened_at=timezone.now(), paused=True)
    for _ in range(fans_ahead):
        services.join_queue(event=event, fan=FanFactory())
    return event


def test_a_serving_number_moved_without_a_broadcast_still_reaches_the_screen(stack):
    event = a_paused_line(fans_ahead=2)
    fan = FanClient(stack.base_url)
    fan.sign_up()
    assert fan.join(event.pk).status_code == 201
    moved_at = []

    def caught_up(status: dict) -> bool:
        if status["position"] == 3 and not moved_at:
            # As if the broadcast of this advance had been lost with Redis:
            # only Postgres knows. Each process re-reads the rooms its fans
            # watch, so this open stream must still show it.
            WaitingRoom.objects.filter(event=event).update(serving_number=2)
            moved_at.append(time.monotonic())
        return status["position"] == 1

    frames, status = fan.stream_until(event.pk, caught_up, timeout=20)
    assert moved_at, "the stream opened at position 3"
    assert time.monotonic() - moved_at[0] < 15
    assert status["status"] == "waiting" and status["ahead"] == 0
    assert [f["status"]["position"] for f in frames] == [3, 1]
    assert QueueEntry.objects.get(event=event, number=3).state == QueueEntry.State.WAITING


def test_a_stream_left_open_follows_the_fan_back_into_line(stack):
    # The stream saw the fan's last turn end (here: they left); joining again
    # must reach it, or it would sit on the old status and miss the token.
    event = make_event(tickets=10)
    fan = FanClient(stack.base_url)
    fan.sign_up()
    assert fan.join(event.pk).status_code == 201
    seen = []

    def admitted_again(status: dict) -> bool:
        seen.append(status["status"])
        if status["status"] == "admitted" and seen.count("admitted") == 1:
            assert fan.api("DELETE", f"/api/v1/events/{event.pk}/queue/").status_code == 204
        elif status["status"] == "closed" and "closed" not in seen[:-1]:
            assert fan.join(event.pk).status_code == 201
        return status["status"] == "admitted" and "closed" in seen

    _, status = fan.stream_until(event.pk, admitted_again, timeout=20)
    assert status["access_token"]
    assert QueueEntry.objects.get(event=event, fan__email=fan.email).state == QueueEntry.State.ADMITTED


def test_a_paused_line_is_shown_paused_live_and_moves_on_when_resumed(stack):
    event = a_paused_line(fans_ahead=0)
    fan = FanClient(stack.base_url)
    fan.sign_up()
    assert fan.join(event.pk).status_code == 201
    seen = []

    def resumed_and_admitted(status: dict) -> bool:
        seen.append((status["status"], status["paused"], status["eta_seconds"]))
        if len(seen) == 1:
            services.set_paused(event_ids=[event.pk], paused=False)  # staff resume
        return status["status"] == "admitted"

    _, status = fan.stream_until(event.pk, resumed_and_admitted, timeout=20)
    assert seen[0] == ("waiting", True, None), "paused: a place, but no promise of a wait"
    assert status["paused"] is False and status["access_token"]
