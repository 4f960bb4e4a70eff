"""The on-sale's cast, made in the database before the crowd arrives.

Fans are created here rather than through POST /api/v1/accounts/: that call
is limited per client address (THROTTLE_ACCOUNTS, 120/min by default, so
20,000 sign-ups would take almost three hours from one machine) and hashes
a password per fan (~0.3 s of server CPU each), none of which is the
on-sale being measured. This is what `manage.py seed_fans` does, and it is
why the simulator runs where it can reach the product's database (the
invariant check reads it too).
"""

import secrets
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ticketing.models import Event
from ticketing.services import create_event
from waitlist.models import WaitingRoom

FAN_BATCH = 2000


def prepare_event(
    *,
    event_id: int | None,
    tickets: int,
    max_per_order: int,
    on_sale_in: float,
    price: Decimal,
    checkout_limit: int | None = None,
) -> Event:
    """The event to sell: the one named by id, or a new one opening in `on_sale_in` seconds.

    With `checkout_limit`, that event's room takes it (see WaitingRoom).
    """
    if event_id is not None:
        event = Event.objects.filter(pk=event_id).first()
        if event is None:
            raise ValidationError(f"There is no event {event_id}.")
    else:
        now = timezone.now()
        event = create_event(
            name=f"Simulated on-sale {now:%Y-%m-%d %H:%M:%S}",
            capacity=tickets,
            price=price,
            max_per_order=max_per_order,
            on_sale_at=now + timedelta(seconds=on_sale_in),
            starts_at=now + timedelta(days=30),
        )
    if checkout_limit is not None:
        WaitingRoom.objects.filter(event=event).update(checkout_limit=checkout_limit)
    return event


def create_fans(*, count: int) -> list[str]:
    """Create `count` fan accounts with API tokens; returns the tokens."""
    User = get_user_model()
    # One hash for every fan: the password is never used, the token is.
    password = make_password(secrets.token_urlsafe(16))
    run = secrets.token_hex(4)
    tokens: list[str] = []
    for start in range(0, count, FAN_BATCH):
        emails = [f"sim-{run}-{i}@example.com" for i in range(start, min(count, start + FAN_BATCH))]
        with transaction.atomic():
            users = User.objects.bulk_create(User(username=e, email=e, password=password) for e in emails)
            made = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
        tokens.extend(token.key for token in made)
    return tokens
