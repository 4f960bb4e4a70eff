"""Admin's static files are served by the web process; a request crosses to a thread once (config.asgi_handler)."""

import asyncio

import pytest
from asgiref.sync import SyncToAsync
from django.test import AsyncClient, Client


@pytest.mark.parametrize("autorefresh", [True, False])
def test_static_files_are_served_sync_and_async(settings, autorefresh):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = autorefresh
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content)

    async def fetch():
        return await AsyncClient().get("/static/admin/css/base.css")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert Client().get("/static/admin/css/no-such-file.css").status_code == 404


def thread_hops(handler, path: str, monkeypatch) -> list[str]:
    """What one request through `handler` runs via sync_to_async, in order."""
    hops = []
    real_call = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await real_call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    sent = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # the client stays connected; the handler cancels this

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"host", b"testserver")], "query_string": b""}
    asyncio.run(handler(scope, receive, send))
    monkeypatch.undo()
    assert sent[0]["status"] in (200, 404)
    return hops


@pytest.mark.parametrize("path", ["/static/admin/css/base.css", "/no-such-page/"])
def test_the_middleware_chain_and_view_run_in_one_thread_hop(monkeypatch, path):
    from config.asgi_handler import OneHopASGIHandler

    hops = thread_hops(OneHopASGIHandler(), path, monkeypatch)
    # request_started's receivers, the chain, then (a file) reading the body
    # or (an error) logging it, and closing the response: one hop each.
    assert len(hops) <= 4, hops
    assert hops.count("convert_exception_to_response.<locals>.inner") == 1


def test_django_own_async_mode_would_hop_for_every_middleware(monkeypatch):
    """The test above can tell: Django's stock handler crosses to a thread again and again."""
    from django.core.handlers.asgi import ASGIHandler

    assert len(thread_hops(ASGIHandler(), "/no-such-page/", monkeypatch)) >= 10
