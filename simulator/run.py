"""Run one simulated on-sale end to end and return its report.

The command's process sets the stage in the database (event, fans), starts
the crowd's processes, watches the inventory while they run, waits until
every hold has ended, then checks the invariants and writes the report.
"""

import json
import math
import os
import queue
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.utils import timezone

from bookings.models import Booking
from simulator import observe
from simulator.chart import draw_chart
from simulator.client import Meter
from simulator.crowd import CrowdConfig, start_crowd
from simulator.plan import build_plans
from simulator.report import build_report, render_text, write_report
from simulator.setup import create_fans, prepare_event
from simulator.stripe_js import stripe_headers
from waitlist.models import WaitingRoom

SAMPLE_SECONDS = 0.5
FANS_PER_PROCESS = 5000
# After the last hold's expiry, how long the server gets to expire it and
# settle refunds (its sweeper runs every 15 s by default).
SETTLE_GRACE_SECONDS = 60.0


class SimulationError(Exception):
    pass


@dataclass(frozen=True)
class Options:
    fans: int
    tickets: int | None
    base_url: str
    stripe_url: str
    report_dir: Path
    seed: int = 1
    abandon: float = 0.1
    decline: float = 0.1
    late_pay: float = 0.05
    concurrency: int | None = None  # fans with a connection open at once; None: all of them
    event_id: int | None = None
    max_per_order: int = 4
    on_sale_in: float = 5.0
    early: float = 0.3
    ramp_seconds: float = 5.0
    processes: int | None = None
    max_wait: float = 900.0
    checkout_limit: int | None = None
    price: Decimal = Decimal("49.50")
    extra_meta: dict = field(default_factory=dict)


def _get_json(url: str, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - operator-given URL
        return json.loads(response.read())


def check_reachable(*, options: Options, event_id: int) -> None:
    """Fail early, and plainly, when the server or Stripe is not the one we think."""
    try:
        seen = _get_json(f"{options.base_url}/api/v1/events/{event_id}/")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SimulationError(
            f"the server at {options.base_url} does not show event {event_id} ({exc}). Is it running, "
            "and does this command use the same DATABASE_URL as the server?"
        ) from None
    if seen.get("id") != event_id:
        raise SimulationError(f"the server at {options.base_url} answered for another event: {seen}")
    try:
        _get_json(f"{options.stripe_url}/v1/payment_intents?limit=1", headers=stripe_headers())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SimulationError(f"no local Stripe server at {options.stripe_url} ({exc})") from None


def simulate_onsale(*, options: Options, say: Callable[[str], None], show: Callable[[str], None]) -> dict:
    """Run the on-sale; `say` prints a line, `show` the live progress line."""
    if options.event_id is None and not options.tickets:
        raise SimulationError("--tickets is required unless --event names an existing event")
    if options.abandon + options.decline + options.late_pay > 1:
        raise SimulationError("--abandon, --decline and --late-pay add up to more than 1")
    event = prepare_event(
        event_id=options.event_id,
        tickets=options.tickets or 0,
        max_per_order=options.max_per_order,
        on_sale_in=options.on_sale_in,
        price=options.price,
        checkout_limit=options.checkout_limit,
    )
    check_reachable(options=options, event_id=event.pk)
    say(f"event {event.pk}: {event.capacity} tickets, on sale at {event.on_sale_at:%H:%M:%S} UTC")
    began = time.time()
    tokens = create_fans(count=options.fans)
    say(f"{len(tokens)} fans created in {time.time() - began:.1f} s")

    started_at = time.time()
    on_sale_at = event.on_sale_at.timestamp()
    plans = build_plans(
        api_tokens=tokens,
        seed=options.seed,
        start_at=started_at + 1.0,  # the crowd processes need a moment to start
        on_sale_at=on_sale_at,
        early=options.early,
        ramp_seconds=options.ramp_seconds,
        max_per_order=event.max_per_order,
        abandon=options.abandon,
        decline=options.decline,
        late_pay=options.late_pay,
    )
    processes = options.processes or min(os.cpu_count() or 1, math.ceil(options.fans / FANS_PER_PROCESS))
    concurrency = options.concurrency or options.fans
    config = CrowdConfig(
        base_url=options.base_url,
        stripe_url=options.stripe_url,
        event_id=event.pk,
        slots_per_process=max(1, math.ceil(concurrency / processes)),
        max_wait=options.max_wait,
    )
    workers, out = start_crowd(plans=plans, config=config, processes=processes)
    say(f"crowd: {processes} processes, at most {concurrency} fans connected at once")
    timeline: list[dict] = []
    results, meter = _watch(event_id=event.pk, workers=workers, out=out, timeline=timeline, show=show, zero=on_sale_at)
    _settle(event_id=event.pk, timeline=timeline, show=show, zero=on_sale_at, last=timeline[-1])
    say("")

    final = observe.inventory_now(event_id=event.pk)
    sold_out_at = None
    if final[2] == event.capacity and event.capacity:
        sold_out_at = observe.last_sale_at(event_id=event.pk).timestamp()
    meta = {
        "event_id": event.pk,
        "capacity": event.capacity,
        "max_per_order": event.max_per_order,
        "checkout_limit": WaitingRoom.objects.filter(event=event).values_list("checkout_limit", flat=True).first(),
        "fans": options.fans,
        "base_url": options.base_url,
        "stripe_url": options.stripe_url,
        "seed": options.seed,
        "abandon": options.abandon,
        "decline": options.decline,
        "late_pay": options.late_pay,
        "concurrency": concurrency,
        "processes": processes,
        "started_at": started_at,
        "on_sale_at": on_sale_at,
        "ended_at": time.time(),
        **options.extra_meta,
    }
    report = build_report(
        meta=meta,
        results=results,
        meter=meter,
        timeline=timeline,
        totals=observe.booking_totals(event_id=event.pk),
        checks=observe.check_invariants(event_id=event.pk),
        final_inventory=final,
        sold_out_at=sold_out_at,
    )
    report["files"] = {
        "json": str(options.report_dir / "onsale-report.json"),
        "chart": str(draw_chart(report, options.report_dir / "onsale-chart.png")),
    }
    write_report(report, options.report_dir)
    say(render_text(report))
    say(f"report: {report['files']['json']}\nchart:  {report['files']['chart']}")
    return report


def _sample(*, event_id: int, counts: dict, zero: float, show: Callable[[str], None]) -> dict:
    available, held, sold = observe.inventory_now(event_id=event_id)
    now = time.time()
    sample = {"t": now, **counts, "available": available, "held": held, "sold": sold}
    show(
        f"{now - zero:+7.1f} s  waiting {counts['waiting']:>6}  admitted {counts['admitted']:>6}  "
        f"booked {counts['booked']:>6}  paid {counts['paid']:>6}  done {counts['done']:>6}  |  "
        f"tickets left {available} (held {held}, sold {sold})"
    )
    return sample


def _watch(*, event_id: int, workers: list, out, timeline: list, show, zero: float) -> tuple[list[dict], Meter]:
    progress: dict[int, dict] = {}
    results: list[dict] = []
    meter = Meter()
    finished: set[int] = set()
    next_sample = time.time()
    while len(finished) < len(workers):
        try:
            message = out.get(timeout=0.1)
        except queue.Empty:
            message = None
        if message and message[0] == "progress":
            progress[message[1]] = message[3]
        elif message and message[0] == "done":
            finished.add(message[1])
            results.extend(message[2])
            meter.merge(Meter.from_dict(message[3]))
        if time.time() >= next_sample:
            counts = {
                k: sum(p.get(k, 0) for p in progress.values())
                for k in ("waiting", "admitted", "booked", "paid", "done")
            }
            timeline.append(_sample(event_id=event_id, counts=counts, zero=zero, show=show))
            next_sample += SAMPLE_SECONDS
            dead = [i for i, w in enumerate(workers) if not w.is_alive() and i not in finished and out.empty()]
            if dead:
                raise SimulationError(
                    f"crowd process(es) {dead} died (exit codes {[workers[i].exitcode for i in dead]})"
                )
    for worker in workers:
        worker.join(timeout=10)
    return results, meter


def _settle(*, event_id: int, timeline: list, show, zero: float, last: dict) -> None:
    """Wait until no hold is live and no refund is owed, so the counts are final."""
    latest_expiry = (
        Booking.objects.filter(event_id=event_id, status=Booking.Status.PROCESSING)
        .order_by("-expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )
    deadline = time.time() + SETTLE_GRACE_SECONDS
    if latest_expiry is not None:
        deadline += max(0.0, (latest_expiry - timezone.now()).total_seconds())
    counts = {k: last[k] for k in ("waiting", "admitted", "booked", "paid", "done")}
    while observe.unsettled_bookings(event_id=event_id) and time.time() < deadline:
        timeline.append(_sample(event_id=event_id, counts=counts, zero=zero, show=show))
        time.sleep(SAMPLE_SECONDS)
    timeline.append(_sample(event_id=event_id, counts=counts, zero=zero, show=show))
