from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ticketing.services import create_event


class Command(BaseCommand):
    help = "Create an event with tickets on sale; prints its id as the last line."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--tickets", type=int, required=True)
        parser.add_argument("--price", required=True, help="decimal, major units, e.g. 49.50")
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--max-per-order", type=int, default=4)
        parser.add_argument("--on-sale-in", type=float, default=0, help="seconds from now until the sale opens")
        parser.add_argument("--starts-in-days", type=float, default=30)
        parser.add_argument("--venue", default="")
        parser.add_argument("--slug", default="", help="with --slug, an existing event of that slug is reused")

    def handle(self, *args, **o):
        if o["tickets"] < 0 or o["max_per_order"] < 1:
            raise CommandError("--tickets must be >= 0 and --max-per-order >= 1")
        try:
            price = Decimal(o["price"])
        except InvalidOperation:
            raise CommandError("--price must be a decimal such as 49.50") from None
        currency = o["currency"].upper()
        if len(currency) != 3 or not currency.isalpha():
            raise CommandError("--currency must be an ISO 4217 code such as USD")
        from ticketing.models import Event

        existing = Event.objects.filter(slug=o["slug"]).first() if o["slug"] else None
        if existing is not None:
            self.stdout.write(f"event {existing.slug} exists")
            self.stdout.write(str(existing.pk))
            return
        now = timezone.now()
        event = create_event(
            name=o["name"],
            slug=o["slug"],
            venue=o["venue"],
            capacity=o["tickets"],
            price=price,
            currency=currency,
            max_per_order=o["max_per_order"],
            on_sale_at=now + timedelta(seconds=o["on_sale_in"]),
            starts_at=now + timedelta(days=o["starts_in_days"]),
        )
        self.stdout.write(f"created {event.name!r} ({event.capacity} tickets at {event.price} {event.currency})")
        self.stdout.write(str(event.pk))
