import csv
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create N fan accounts with API tokens and write `email,token` lines to a CSV file."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--out", required=True)
        parser.add_argument("--password", default="fan-password-123", help="the same password for every fan")
        parser.add_argument("--batch", type=int, default=2000)

    def handle(self, *args, **o):
        if o["count"] < 1:
            raise CommandError("--count must be at least 1")
        User = get_user_model()
        # One hash for all fans: hashing 100k passwords one by one takes hours.
        password = make_password(o["password"])
        run = secrets.token_hex(4)
        written = 0
        with open(o["out"], "w", newline="") as fh:
            out = csv.writer(fh, lineterminator="\n")
            for start in range(0, o["count"], o["batch"]):
                size = min(o["batch"], o["count"] - start)
                emails = [f"fan-{run}-{start + i}@example.com" for i in range(size)]
                with transaction.atomic():
                    users = User.objects.bulk_create(
                        User(username=email, email=email, password=password) for email in emails
                    )
                    tokens = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
                out.writerows((user.email, token.key) for user, token in zip(users, tokens, strict=True))
                written += size
        self.stdout.write(f"wrote {written} fans to {o['out']}")
