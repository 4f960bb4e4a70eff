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
