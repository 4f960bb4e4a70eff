"""Who is on the other end of a live connection: DRF token or session."""

import logging

import psycopg
from channels.auth import AuthMiddlewareStack
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError

from waitlist.consumers import BUSY_DETAIL, refuse_stream
from waitlist.stream_reads import fan_for_api_token

log = logging.getLogger(__name__)


async def busy(send) -> None:
    await refuse_stream(send, 503, "busy", BUSY_DETAIL, retry=True)


class TokenAuthMiddleware:
    """`Authorization: Token <key>` wins; otherwise the session cookie decides."""

    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "token" and key.strip():
            # The stream needs only who the fan is: their id, read from the
            # event loop (see waitlist.stream_reads), not a full user row.
            try:
                fan_id = await fan_for_api_token(key.strip())
            except (psycopg.Error, DatabaseError):
                # Postgres down or out of connections: the fan's place is
                # safe, and EventSource reconnects after the Retry-After.
                log.warning("stream could not read who its fan is", exc_info=True)
                return await busy(send)
            user = AnonymousUser() if fan_id is None else get_user_model()(pk=fan_id, is_active=True)
            return await self.inner({**scope, "user": user}, receive, send)
        try:
            return await self.session_stack(scope, receive, send)
        except DatabaseError:
            log.warning("stream could not read its session", exc_info=True)
            return await busy(send)
