"""WhiteNoise as async middleware.

Every other middleware here is async-capable; WhiteNoise 6 is sync only.
One sync middleware in an async chain makes Django hop from the event loop
to a thread for it and back to the loop for the rest of the chain, then to
a thread again for the view: each hop waits its turn on an event loop that,
at an on-sale, is also serving thousands of live streams. Finding a static
file is a dictionary lookup (a file-system search only with DEBUG's
autorefresh, which runs in a thread), so it runs on the loop here and a
request makes a single hop, for its view.
"""

from asgiref.sync import markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request):
        path = request.path_info
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(path) if path.startswith(self.static_prefix) else None
        else:
            static_file = self.files.get(path)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
