from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from ticketing.services import create_event


class FanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"fan{n}@example.com")
    email = factory.LazyAttribute(lambda o: o.username)
    password = factory.django.Password("correct horse battery")


def make_event(
    *, tickets: int = 10, max_per_order: int = 4, price: str = "49.50", on_sale_in: float = -60, name: str = "Show"
):
    now = timezone.now()
    return create_event(
        name=name,
        capacity=tickets,
        price=Decimal(price),
        starts_at=now + timedelta(days=30),
        on_sale_at=now + timedelta(seconds=on_sale_in),
        max_per_order=max_per_order,
    )


def admit_directly(*, event, fans) -> list[str]:
    """Give each fan an access token for `event` without running the admitter
    (tests of booking under load need more admitted fans than tickets)."""
    from datetime import timedelta

    from django.db.models import Max

    from waitlist.models import AccessToken, QueueEntry
    from waitlist.tokens import sign_token

    now = timezone.now()
    tokens = []
    first = (QueueEntry.objects.filter(event=event).aggregate(m=Max("number"))["m"] or 0) + 1
    for number, fan in enumerate(fans, start=first):
        entry = QueueEntry.objects.create(
            event=event, fan=fan, number=number, state=QueueEntry.State.ADMITTED, admitted_at=now
        )
        token = AccessToken.objects.create(
            entry=entry, event=event, fan=fan, issued_at=now, expires_at=now + timedelta(minutes=5)
        )
        tokens.append(sign_token(token_id=token.id, event_id=event.pk, fan_id=fan.pk))
    return tokens


def join_and_admit(*, event, fan) -> str:
    """Put the fan in line and run the admitter until they are in; returns the
    signed access token.

    A running test stack's admission tick may hold the room (the admitter
    skips a locked room) after reading the line before this fan joined; it
    admits nobody then, so the admitter runs again here instead of the test
    failing on that timing.
    """
    import time

    from waitlist import services
    from waitlist.selectors import get_entry, queue_status

    services.join_queue(event=event, fan=fan)
    deadline = time.monotonic() + 10
    while True:
        services.admit_fans(event_id=event.pk)
        status = queue_status(entry=get_entry(event=event, fan=fan))
        if status["status"] == "admitted":
            return status["access_token"]
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
