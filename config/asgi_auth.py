"""Who is on the other end of a live connection: DRF token or session."""

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser


def _find_user_for_token(key: str):
    # Thousands of fans open their stream at once when a sale opens, and the
    # stream needs only who they are: one indexed read, no ORM query.
    from django.contrib.auth import get_user_model
    from django.db import connection

    User = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT u.id FROM authtoken_token t JOIN {User._meta.db_table} u ON u.id = t.user_id "
            "WHERE t.key = %s AND u.is_active",
            [key],
        )
        row = cursor.fetchone()
    if row is None:
        return AnonymousUser()
    return User(pk=row[0], is_active=True)


# Off the event loop's single database thread: see waitlist.consumers.
_user_for_token = database_sync_to_async(_find_user_for_token, thread_sensitive=False)


class TokenAuthMiddleware:
    """`Authorization: Token <key>` wins; otherwise the session cookie decides."""

    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "token" and key.strip():
            scope = {**scope, "user": await _user_for_token(key.strip())}
            return await self.inner(scope, receive, send)
        return await self.session_stack(scope, receive, send)
