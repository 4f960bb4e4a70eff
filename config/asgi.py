"""HTTP for Django, and the waiting-room stream for Channels, on one ASGI app."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from config.asgi_handler import OneHopASGIHandler  # noqa: E402

django_app = OneHopASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from config.asgi_auth import TokenAuthMiddleware  # noqa: E402
from config.checkout_load import CheckoutMeter  # noqa: E402
from config.load_shedding import Lanes  # noqa: E402
from waitlist.consumers import QueueStreamConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path(
                    "api/v1/events/<int:event_id>/queue/stream/",
                    TokenAuthMiddleware(QueueStreamConsumer.as_asgi()),
                ),
                re_path(
                    r"",
                    Lanes(
                        django_app,
                        concurrency=settings.WEB_CONCURRENCY,
                        general_concurrency=settings.WEB_GENERAL_CONCURRENCY,
                        queue=settings.WEB_QUEUE,
                        wait_seconds=settings.WEB_QUEUE_SECONDS,
                        checkout_meter=CheckoutMeter(),
                    ),
                ),
            ]
        ),
    }
)
