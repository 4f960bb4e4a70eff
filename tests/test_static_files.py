"""Admin's static files are served by the web process, from the async middleware chain."""

import asyncio

import pytest
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


def test_every_middleware_runs_on_the_event_loop():
    # One sync-only middleware would cost every request two more thread hops.
    from django.conf import settings
    from django.utils.module_loading import import_string

    assert all(getattr(import_string(path), "async_capable", False) for path in settings.MIDDLEWARE)
