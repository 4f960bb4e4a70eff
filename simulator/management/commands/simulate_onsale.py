import math
import os
import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulator.run import Options, SimulationError, simulate_onsale


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Run an on-sale with a simulated crowd against the running product (make run) and report how it went: "
        "figures on stdout, JSON and a PNG chart in --report."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fans", type=int, required=True, help="fan accounts to create and drive through the sale")
        parser.add_argument("--tickets", type=int, help="capacity of the new event (not with --event)")
        parser.add_argument("--event", type=int, help="sell this existing event instead of creating one")
        parser.add_argument(
            "--base-url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="the running site (default: http://127.0.0.1:$PORT, as make run starts it)",
        )
        parser.add_argument("--stripe-url", default="", help="the local Stripe server (default: STRIPE_API_BASE)")
        parser.add_argument("--concurrency", type=int, help="fans with a connection open at once (default: all)")
        parser.add_argument(
            "--abandon", type=_fraction, default=0.1, help="share of fans who never pay (default %(default)s)"
        )
        parser.add_argument(
            "--decline", type=_fraction, default=0.1, help="share paying with a declined card (default %(default)s)"
        )
        parser.add_argument(
            "--late-pay", type=_fraction, default=0.05, help="share paying after the hold expired (default %(default)s)"
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=1,
            help="random seed: the same seed gives the same fans' plans (default %(default)s)",
        )
        parser.add_argument(
            "--report", default="reports/onsale", help="directory for the report and chart (default %(default)s)"
        )
        parser.add_argument(
            "--max-per-order",
            type=int,
            default=4,
            help="tickets per booking at most (a new event) (default %(default)s)",
        )
        parser.add_argument(
            "--on-sale-in", type=float, default=5.0, help="seconds until a new event opens (default %(default)s)"
        )
        parser.add_argument(
            "--early", type=_fraction, default=0.3, help="share of fans joining before on-sale (default %(default)s)"
        )
        parser.add_argument(
            "--ramp", type=float, default=5.0, help="seconds over which the others arrive (default %(default)s)"
        )
        parser.add_argument("--processes", type=int, help="crowd processes (default: one per 5,000 fans, up to cores)")
        parser.add_argument(
            "--checkout-limit",
            type=int,
            help="most admitted fans not yet booked at once: set on the event's waiting room (default: leave it)",
        )
        parser.add_argument(
            "--max-wait", type=float, default=900.0, help="seconds a fan waits in line at most (default %(default)s)"
        )

    def handle(self, *args, **o):
        if o["fans"] < 1:
            raise CommandError("--fans must be at least 1")
        if settings.STRIPE_LOCAL is False and not o["stripe_url"]:
            raise CommandError("fans pay with test cards: run against a local Stripe server (no STRIPE_SECRET_KEY)")
        options = Options(
            fans=o["fans"],
            tickets=o["tickets"],
            event_id=o["event"],
            base_url=o["base_url"].rstrip("/"),
            stripe_url=(o["stripe_url"] or settings.STRIPE_API_BASE).rstrip("/"),
            report_dir=Path(o["report"]),
            seed=o["seed"],
            abandon=o["abandon"],
            decline=o["decline"],
            late_pay=o["late_pay"],
            concurrency=o["concurrency"],
            max_per_order=o["max_per_order"],
            on_sale_in=o["on_sale_in"],
            early=o["early"],
            ramp_seconds=o["ramp"],
            processes=o["processes"],
            max_wait=o["max_wait"],
            checkout_limit=o["checkout_limit"],
            price=Decimal("49.50"),
        )
        if self.stdout.isatty():

            def show(line: str) -> None:  # one line, rewritten in place
                self.stdout.write("\r" + line, ending="")
                self.stdout.flush()

        else:
            show = LoggedProgress(self.stdout.write)

        try:
            report = simulate_onsale(options=options, say=self.stdout.write, show=show)
        except (SimulationError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if report["invariants"]["result"] != "PASS":
            raise CommandError("invariant check FAILED (see the report above)")


class LoggedProgress:
    """The progress line in a log: at most every 2 s when the counts moved,
    and every 30 s when they did not (waiting for holds to run out), so a
    quiet stretch shows the run is alive without repeating itself."""

    def __init__(self, write, clock=time.monotonic):
        self._write, self._clock = write, clock
        self._at, self._counts = -math.inf, None

    def __call__(self, line: str) -> None:
        counts = line.split(" s  ", 1)[-1]  # the line without its elapsed time
        quiet = self._clock() - self._at
        if quiet >= 30 or (quiet >= 2 and counts != self._counts):
            self._at, self._counts = self._clock(), counts
            self._write(line)
