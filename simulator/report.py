"""The on-sale's figures, from the crowd's records and the database's counts.

Pure functions over plain data, so the report can be rebuilt or tested
without a running product. Times are seconds; latencies are reported in ms.
"""

import json
from collections import Counter
from pathlib import Path

from simulator.client import Meter
from simulator.observe import Check

BOOKING_ROUTE = "POST /api/v1/bookings/"
JOIN_ROUTE = "POST /api/v1/events/{id}/queue/"
STRIPE_CONFIRM_ROUTE = "POST /v1/payment_intents/{id}/confirm"


def percentiles(values: list[float], *, scale: float = 1000.0) -> dict:
    """p50/p95/p99/max by nearest rank, in ms by default; None when empty."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
        return round(ordered[index] * scale, 1)

    return {"n": len(ordered), "p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1] * scale, 1)}


def _gaps(results: list[dict], start: str, end: str, *, outcome: str | None = None) -> list[float]:
    return [
        r[end] - r[start]
        for r in results
        if r[start] is not None and r[end] is not None and (outcome is None or r["outcome"] == outcome)
    ]


def _rates(per_second: dict[int, int]) -> dict:
    """Average over the seconds that saw traffic, the busiest second and the busiest 10 s."""
    if not per_second:
        return {"total": 0, "seconds": 0, "average": 0.0, "peak_1s": 0, "peak_10s_average": 0.0}
    first, last = min(per_second), max(per_second)
    series = [per_second.get(s, 0) for s in range(first, last + 1)]
    window = min(10, len(series))
    best = max(sum(series[i : i + window]) for i in range(len(series) - window + 1))
    total = sum(series)
    return {
        "total": total,
        "seconds": len(series),
        "average": round(total / len(series), 1),
        "peak_1s": max(series),
        "peak_10s_average": round(best / window, 1),
    }


def build_report(
    *,
    meta: dict,
    results: list[dict],
    meter: Meter,
    timeline: list[dict],
    totals: dict,
    checks: list[Check],
    final_inventory: tuple[int, int, int],
    sold_out_at: float | None,
) -> dict:
    on_sale = meta["on_sale_at"]
    available, held, sold = final_inventory
    capacity = meta["capacity"]
    server_errors = {k: v for k, v in meter.errors.items() if k.startswith("server ")}
    stripe_errors = {k: v for k, v in meter.errors.items() if k.startswith("stripe ")}
    client_errors = {k: v for k, v in meter.errors.items() if k.startswith("client ")}
    five_xx = sum(v for k, v in server_errors.items() if " -> 5" in k)
    transport = sum(v for k, v in server_errors.items() if " -> transport" in k)
    all_taken = next((s["t"] - on_sale for s in timeline if s["t"] >= on_sale and s["available"] == 0), None)
    booking_seconds = Counter(int(t) for t in meter.bookings_created)
    created = sorted(meter.bookings_created)
    booking_span = (created[-1] - created[0]) if len(created) > 1 else 0.0
    invariant_ok = all(c.ok for c in checks)
    return {
        "meta": meta,
        "fans": {
            "total": len(results),
            "joined_before_on_sale": sum(1 for r in results if r["early"]),
            "behaviours": dict(Counter(r["behaviour"] for r in results)),
            "outcomes": dict(sorted(Counter(r["outcome"] for r in results).items())),
        },
        "tickets": {
            "capacity": capacity,
            "sold": sold,
            "held_at_end": held,
            "available_at_end": available,
            "bookings": totals,
        },
        "timing": {
            "all_tickets_taken_s": None if all_taken is None else round(all_taken, 2),
            "sold_out_s": None if sold_out_at is None else round(sold_out_at - on_sale, 2),
            "run_s": round(meta["ended_at"] - meta["started_at"], 2),
        },
        "latency_ms": {
            "join_to_token": percentiles(_gaps(results, "t_joined", "t_token")),
            "token_to_booking": percentiles(_gaps(results, "t_token", "t_booked")),
            "booking_to_paid": percentiles(_gaps(results, "t_booked", "t_paid", outcome="paid")),
            "booking_request": percentiles(meter.latencies.get(BOOKING_ROUTE, [])),
            "join_request": percentiles(meter.latencies.get(JOIN_ROUTE, [])),
            # Stripe's side of paying, to tell a slow payment server from a slow product.
            "stripe_confirm_request": percentiles(meter.latencies.get(STRIPE_CONFIRM_ROUTE, [])),
        },
        "throughput": {
            "server_requests_per_s": _rates(meter.server_per_second),
            "stripe_requests": meter.requests.get("stripe", 0),
            # What the load was made of: successful answers per call.
            "answered_by_route": dict(sorted(((k, len(v)) for k, v in meter.latencies.items()), key=lambda kv: -kv[1])),
            "bookings_created": len(created),
            "bookings_per_s": round(len(created) / booking_span, 1) if booking_span else None,
            "bookings_peak_1s": max(booking_seconds.values()) if booking_seconds else 0,
        },
        "errors": {
            "server": dict(sorted(server_errors.items(), key=lambda kv: -kv[1])),
            "server_5xx": five_xx,
            "server_transport": transport,
            "stripe": dict(sorted(stripe_errors.items(), key=lambda kv: -kv[1])),
            "client": client_errors,
        },
        "invariants": {
            "result": "PASS" if invariant_ok else "FAIL",
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        },
        "timeline": timeline,
    }


def _fmt(stats: dict) -> str:
    if not stats["n"]:
        return "n=0"
    spread = f"p50 {stats['p50']:.0f}  p95 {stats['p95']:.0f}  p99 {stats['p99']:.0f}  max {stats['max']:.0f} ms"
    return f"{spread}  (n={stats['n']})"


def _seconds(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.1f} s after on-sale"


def render_text(report: dict) -> str:
    """The report as a person reads it at the end of a run."""
    t, b = report["tickets"], report["tickets"]["bookings"]
    timing, lat, thr, err = report["timing"], report["latency_ms"], report["throughput"], report["errors"]
    rates = thr["server_requests_per_s"]
    lines = [
        f"On-sale report: event {report['meta']['event_id']}, {report['fans']['total']} fans "
        f"({report['fans']['joined_before_on_sale']} before on-sale), {t['capacity']} tickets",
        f"  sold            {t['sold']} tickets in {b['succeeded']['bookings']} bookings "
        f"(of which late payments kept: {b['late_payments']['bookings'] - b['refunded']['bookings']})",
        f"  refunded        {b['refunded']['bookings']} bookings ({b['refunded']['tickets']} tickets)",
        f"  expired         {b['expired']['bookings']} bookings ({b['expired']['tickets']} tickets)",
        f"  declined        {b['failed']['bookings']} bookings ({b['failed']['tickets']} tickets)",
        f"  left at end     {t['held_at_end']} held, {t['available_at_end']} available",
        f"  all taken       {_seconds(timing['all_tickets_taken_s'], 'never (tickets left)')}",
        f"  sold out        {_seconds(timing['sold_out_s'], 'no (not every ticket sold)')}",
        "  fan outcomes    " + ", ".join(f"{k} {v}" for k, v in report["fans"]["outcomes"].items()),
        "latency (fan's side)",
        f"  join -> token      {_fmt(lat['join_to_token'])}",
        f"  token -> booking   {_fmt(lat['token_to_booking'])}",
        f"  booking -> paid    {_fmt(lat['booking_to_paid'])}",
        f"  POST booking       {_fmt(lat['booking_request'])}",
        f"  POST join          {_fmt(lat['join_request'])}",
        f"  Stripe confirm     {_fmt(lat['stripe_confirm_request'])}",
        "throughput",
        f"  server requests    {rates['total']} in {rates['seconds']} s: {rates['average']}/s average, "
        f"{rates['peak_10s_average']}/s busiest 10 s, {rates['peak_1s']}/s busiest second",
        f"  bookings           {thr['bookings_created']} created, "
        f"{thr['bookings_per_s'] if thr['bookings_per_s'] is not None else '-'}/s first to last, "
        f"{thr['bookings_peak_1s']}/s busiest second",
        f"errors (server: {err['server_5xx']} 5xx, {err['server_transport']} transport)",
    ]
    lines += [f"  {count:>6}  {kind}" for kind, count in err["server"].items()] or ["  none"]
    lines += [f"  {count:>6}  {kind}" for kind, count in {**err["stripe"], **err["client"]}.items()]
    lines.append(f"invariants: {report['invariants']['result']}")
    lines += [f"  {'ok  ' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in report["invariants"]["checks"]]
    return "\n".join(lines)


def write_report(report: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "onsale-report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    return path
