"""Django's ASGI handler, with the middleware chain and view run as one synchronous call.

In async mode Django runs each middleware's process_request and
process_response through sync_to_async (MiddlewareMixin.__acall__), so a
request with our eight middlewares crossed from the event loop to a thread
and back about a dozen times, and each crossing waited its turn on a loop
that, at an on-sale, is also serving thousands of live streams. Here the
chain is built in sync mode, as under WSGI, and the loop hands the whole
request to one thread once (the slot's kept thread, config.load_shedding).
Nothing in the chain is async: the live stream is a Channels consumer,
outside Django.
"""

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneHopASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
