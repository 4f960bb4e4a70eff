"""The on-sale simulator end to end: a small crowd with every behaviour
against real servers (uvicorn, Celery worker and beat, localstripe and its
webhooks), and what its report says checked against the database."""

import json

import pytest

from bookings.models import Booking
from simulator.run import Options, simulate_onsale
from ticketing.selectors import event_inventory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def test_small_onsale_with_every_behaviour_sells_exactly_the_capacity(stack_factory, local_stripe, tmp_path):
    # Short holds so abandoned and late-paid holds expire within the test.
    stack = stack_factory(HOLD_SECONDS=6)
    report = simulate_onsale(
        options=Options(
            fans=200,
            tickets=50,
            base_url=stack.base_url,
            stripe_url=local_stripe.url,
            report_dir=tmp_path,
            seed=7,
            abandon=0.15,
            decline=0.15,
            late_pay=0.15,
            on_sale_in=3,
            ramp_seconds=3,
            max_wait=120,
        ),
        say=print,
        show=lambda line: None,
    )
    why = json.dumps({k: report[k] for k in ("fans", "tickets", "errors", "invariants")}, indent=1) + stack.logs()

    assert report["invariants"]["result"] == "PASS", why
    assert report["errors"]["server_5xx"] == 0, why
    assert report["errors"]["server_transport"] == 0, why
    assert report["errors"]["client"] == {}, why

    # Every behaviour was played, and each fan ended the way its behaviour leads.
    assert report["fans"]["behaviours"] == {"pay": 110, "abandon": 30, "decline": 30, "late_pay": 30}
    outcomes = report["fans"]["outcomes"]
    assert not [o for o in outcomes if o.startswith("error")], why
    assert outcomes.get("paid", 0) > 0 and outcomes.get("declined", 0) > 0 and outcomes.get("expired", 0) > 0, why
    late = sum(outcomes.get(o, 0) for o in ("late_paid", "late_refunded", "late_refused"))
    assert late > 0, why
    # More fans than tickets: some were turned away once it sold out.
    assert outcomes.get("closed_in_line", 0) + outcomes.get("sold_out_at_join", 0) > 0, why

    # The report's figures are the database's.
    event_id = report["meta"]["event_id"]
    inventory = event_inventory(event_id=event_id)
    bookings = Booking.objects.filter(event_id=event_id)
    sold_by_bookings = sum(b.quantity for b in bookings.filter(status=Booking.Status.SUCCEEDED))
    assert report["tickets"]["sold"] == inventory.sold == sold_by_bookings
    assert bookings.count() == report["throughput"]["bookings_created"], why
    assert bookings.filter(status=Booking.Status.SUCCEEDED).count() == outcomes.get("paid", 0) + outcomes.get(
        "late_paid", 0
    ), why
    expired = bookings.filter(status=Booking.Status.EXPIRED).count()
    assert report["tickets"]["bookings"]["expired"]["bookings"] == expired >= outcomes["expired"], why
    assert report["tickets"]["bookings"]["failed"]["bookings"] == outcomes["declined"], why
    # Expired, declined and refused holds came back and were sold again:
    # exactly the capacity is sold, nothing is left held or for sale.
    assert (inventory.sold, inventory.held, inventory.available) == (50, 0, 0), why
    assert report["timing"]["sold_out_s"] is not None and report["timing"]["sold_out_s"] > 0

    assert json.loads((tmp_path / "onsale-report.json").read_text())["invariants"]["result"] == "PASS"
    assert (tmp_path / "onsale-chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_logged_progress_line_is_not_repeated_while_nothing_moves():
    from simulator.management.commands.simulate_onsale import LoggedProgress

    clock, written = [0.0], []
    show = LoggedProgress(written.append, clock=lambda: clock[0])
    for at, counts in [(0, "a"), (1, "b"), (2, "b"), (4, "b"), (20, "b"), (32, "b"), (33, "c"), (34, "d")]:
        clock[0] = at
        show(f"{at:+7.1f} s  {counts}")
    # Moved: at once, then at most every 2 s; unchanged: every 30 s only.
    assert written == ["   +0.0 s  a", "   +2.0 s  b", "  +32.0 s  b", "  +34.0 s  d"]
