"""Who is on the other end of a live connection: DRF token or session."""

from channels.auth import AuthMiddlewareStack
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from waitlist.stream_reads import fan_for_api_token


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
            fan_id = await fan_for_api_token(key.strip())
            user = AnonymousUser() if fan_id is None else get_user_model()(pk=fan_id, is_active=True)
            return await self.inner({**scope, "user": user}, receive, send)
        return await self.session_stack(scope, receive, send)
