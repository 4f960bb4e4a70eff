import time

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Point the local Stripe server's webhooks at this site, signed with STRIPE_WEBHOOK_SECRET."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", required=True, help="the site's webhook URL, e.g. http://127.0.0.1:8000/payments/stripe/webhook/"
        )
        parser.add_argument("--wait", type=float, default=15, help="seconds to wait for the Stripe server")

    def handle(self, *args, **o):
        if not settings.STRIPE_LOCAL or not settings.STRIPE_API_BASE:
            raise CommandError("only for a local Stripe server (no STRIPE_SECRET_KEY, STRIPE_API_BASE set)")
        endpoint = f"{settings.STRIPE_API_BASE.rstrip('/')}/_config/webhooks/ticketing"
        deadline = time.monotonic() + o["wait"]
        while True:
            try:
                response = requests.post(
                    endpoint, data={"url": o["url"], "secret": settings.STRIPE_WEBHOOK_SECRET}, timeout=5
                )
                response.raise_for_status()
                break
            except requests.RequestException as exc:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"local Stripe server at {settings.STRIPE_API_BASE} is not answering: {exc}"
                    ) from None
                time.sleep(0.3)
        self.stdout.write(f"webhooks from {settings.STRIPE_API_BASE} go to {o['url']}")
