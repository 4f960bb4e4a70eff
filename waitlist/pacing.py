"""The checkout window: how many admitted fans may be about to book at once.

Staff set the ceiling (WaitingRoom.checkout_limit). Under it the admitter
finds by itself the window checkout can serve quickly, the way TCP finds a
link's capacity: once a step, if more than CHECKOUT_SLOW_SHARE of checkout's
recent requests took longer than CHECKOUT_SLOW_SECONDS, the window narrows
by a third; if checkout was quick and at least half the window is in use,
it widens by a quarter. A fixed limit cannot be right for both a crowd that
books the moment it is let in (a thousand tokens at once became a thousand
booking requests waiting tens of seconds) and fans who take a minute to
choose (a small limit would let them in a few at a time).
"""

from datetime import datetime, timedelta

from django.conf import settings

from config.checkout_load import recent_checkout_load
from waitlist.models import WaitingRoom


def checkout_window(*, room: WaitingRoom, outstanding: int, now: datetime) -> int | None:
    """Most admitted-but-unbooked fans to allow now; None for no limit.

    Call with the room's row locked (the admitter's lock): the window is
    adjusted at most once per CHECKOUT_WINDOW_STEP_SECONDS and saved here.
    """
    limit = room.checkout_limit or None
    if not settings.CHECKOUT_PACING:
        return limit
    window = room.checkout_window or settings.CHECKOUT_WINDOW_START
    step = timedelta(seconds=settings.CHECKOUT_WINDOW_STEP_SECONDS)
    if room.checkout_window_at is None or now - room.checkout_window_at >= step:
        load = recent_checkout_load(seconds=settings.CHECKOUT_LOAD_SECONDS, now=now.timestamp())
        if load.slow_share > settings.CHECKOUT_SLOW_SHARE:
            window = window * 2 // 3
        elif 2 * outstanding >= window:
            window += max(1, window // 4)
        window = max(window, settings.CHECKOUT_WINDOW_MIN)
        if limit is not None:
            window = min(window, limit)
        room.checkout_window, room.checkout_window_at = window, now
        room.save(update_fields=["checkout_window", "checkout_window_at"])
    # A limit staff lowered within the step applies at once.
    return window if limit is None else min(window, limit)
