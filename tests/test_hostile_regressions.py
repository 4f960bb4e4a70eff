"""Faults a hostile tester found, each kept as a test."""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bookings import services as bookings
from bookings.models import Booking
from tests.concurrency import run_together
from tests.factories import FanFactory, admit_directly, make_event
from ticketing.errors import ServiceError
from waitlist import services as waitlist
from waitlist.models import QueueEntry

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(fan) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=fan).key}")
    return client


def test_leaving_while_booking_never_deadlocks():
    # Both lock the access token before the queue entry.
    event = make_event(tickets=100)
    fans = [FanFactory() for _ in range(30)]
    tokens = admit_directly(event=event, fans=fans)
    calls = []
    for fan, token in zip(fans, tokens, strict=True):
        calls.append(lambda f=fan, t=token: bookings.reserve_tickets(event=event, fan=f, quantity=1, access_token=t))
        calls.append(lambda f=fan: waitlist.leave_queue(event=event, fan=f))
    results = run_together(calls, threads=20)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, ServiceError)]
    assert unexpected == []
    # Each fan either booked (then left the line) or left first and was refused.
    for booked, left in zip(results[::2], results[1::2], strict=True):
        assert isinstance(booked, Booking) or getattr(booked, "code", None) == "invalid_token", booked
        assert left is None or getattr(left, "code", None) == "not_in_queue"


@pytest.mark.parametrize("path", ["/api/v1/accounts/", "/api/v1/accounts/token/", "/api/v1/bookings/"])
def test_deeply_nested_json_is_a_400(path):
    client = client_for(FanFactory())
    body = '{"email": ' + "[" * 5000 + "]" * 5000 + "}"
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/accounts/", '{"email": "s1@example.com", "password": "Zx9!Zx9!\\udfff"}'),
        ("/api/v1/accounts/token/", '{"email": "\\ud800@example.com", "password": "x"}'),
    ],
)
def test_unpaired_surrogates_are_a_400(path, body):
    response = APIClient(raise_request_exception=False).post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_rejoining_concurrently_after_leaving_creates_one_place():
    event = make_event(tickets=10)
    fan = FanFactory()
    waitlist.join_queue(event=event, fan=fan)
    waitlist.leave_queue(event=event, fan=fan)
    results = run_together([lambda: waitlist.join_queue(event=event, fan=fan) for _ in range(10)])
    assert sum(created for _, created in results) == 1
    assert QueueEntry.objects.filter(event=event, fan=fan).count() == 1


def test_an_unexpected_api_error_is_json():
    event = make_event(tickets=10)
    client = client_for(FanFactory())
    from unittest import mock

    with mock.patch("waitlist.services.join_queue", side_effect=RuntimeError("bug")):
        response = client.post(f"/api/v1/events/{event.pk}/queue/")
    assert response.status_code == 500
    assert json.loads(response.content)["error"] == "server_error"


@pytest.mark.parametrize("path", ["/api/v1/accounts/", "/api/v1/accounts/token/", "/api/v1/bookings/"])
def test_a_body_over_the_upload_limit_is_a_413_and_changes_nothing(path, settings):
    client = client_for(FanFactory())
    users = get_user_model().objects.count()
    body = json.dumps({"email": "big@example.com", "password": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert get_user_model().objects.count() == users


def test_the_webhook_answers_json_to_an_oversized_body_and_a_wrong_method(settings):
    client = APIClient(raise_request_exception=False)
    response = client.post(
        "/payments/stripe/webhook/", "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    response = client.get("/payments/stripe/webhook/")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "POST"
