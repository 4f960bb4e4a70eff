"""Who is on a live connection: a database that cannot answer gives 503 busy, never a 500."""

import asyncio
import json

import psycopg
import pytest
from django.db import OperationalError

from config import asgi_auth


def open_stream(app, headers: list) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/v1/events/1/queue/stream/", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent


def never_called(scope, receive, send):
    raise AssertionError("the stream must not open without knowing its fan")


@pytest.mark.parametrize(
    "headers",
    [[(b"authorization", b"Token abc123")], [(b"cookie", b"sessionid=abc123")]],
    ids=["api token", "session cookie"],
)
def test_stream_auth_answers_busy_when_the_database_cannot(monkeypatch, headers):
    async def down(key):
        raise psycopg.OperationalError("sorry, too many clients already")

    class SessionStackDown:
        async def __call__(self, scope, receive, send):
            raise OperationalError("sorry, too many clients already")

    monkeypatch.setattr(asgi_auth, "fan_for_api_token", down)
    app = asgi_auth.TokenAuthMiddleware(never_called)
    app.session_stack = SessionStackDown()
    start, body = open_stream(app, headers)
    assert start["status"] == 503
    assert 1 <= int(dict(start["headers"])[b"retry-after"]) <= 3
    assert json.loads(body["body"])["error"] == "busy"
