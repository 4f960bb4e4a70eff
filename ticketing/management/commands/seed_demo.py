import os
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from ticketing.models import Event
from ticketing.services import create_event

DEMO_SLUG = "demo-on-sale"


class Command(BaseCommand):
    help = "Idempotent: a staff login and a demo event on sale (used by `make run`)."

    def handle(self, *args, **o):
        email = os.environ.get("STAFF_EMAIL", "staff@example.com")
        password = os.environ.get("STAFF_PASSWORD", "staff-password")
        User = get_user_model()
        staff, created = User.objects.get_or_create(
            username=email, defaults={"email": email, "is_staff": True, "is_superuser": True}
        )
        if created:
            staff.set_password(password)
            staff.save(update_fields=["password"])
            self.stdout.write(f"created staff login {email}")
        event = Event.objects.filter(slug=DEMO_SLUG).first()
        if event is None:
            now = timezone.now()
            event = create_event(
                name="Demo on-sale: The Midnight Echoes",
                slug=DEMO_SLUG,
                venue="Riverside Hall",
                capacity=100,
                price=Decimal("49.50"),
                currency="USD",
                max_per_order=4,
                on_sale_at=now,
                starts_at=now + timedelta(days=60),
            )
            self.stdout.write(f"created demo event {event.pk}")
        self.stdout.write(str(event.pk))
