"""A whole on-sale under load, with the server's own ceiling beside it.

    .venv/bin/python benchmarks/onsale.py [--fans 20000] [--tickets 5000] [--hold-seconds 30]
                                          [--trivial-seconds 10] [--connections 64] [-- simulate_onsale options]

Starts the product the way `make run` does (scripts/run.sh: uvicorn with 2
workers, a Celery worker and beat, localstripe and its webhooks) on free
ports, its own database (BENCH_DATABASE_URL, default .../ticketing_onsale_bench)
and Redis database (BENCH_REDIS_URL, default redis://127.0.0.1:6379/6). Then,
against that same server:

1. the framework's own limit: requests per second on GET /healthz (one
   `SELECT 1` and a Redis ping, no product logic) from --connections
   keep-alive connections spread over two client processes, for
   --trivial-seconds;
2. the on-sale: `manage.py simulate_onsale --fans N --tickets T`, whose
   report gives the figures printed at the end, with the ratio of the
   server's request rate during the on-sale to the trivial rate.

Arrivals: --early of the fans join over the --on-sale-in seconds before the
sale opens (the pre-queue), the rest over the --ramp seconds after it.
Holds last --hold-seconds (30 by default instead of 300) so abandoned and
late-paid holds end, and the run with them, within a minute of the rush.
Client and server share the machine's cores: the figures are what the
whole machine does, not the server alone.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- trivial endpoint load


async def _hammer(url: str, connections: int, until: float) -> tuple[int, int]:
    import aiohttp

    ok = failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def loop() -> None:
            nonlocal ok, failed
            while time.time() < until:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status == 200:
                            ok += 1
                        else:
                            failed += 1
                except aiohttp.ClientError:
                    failed += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
    return ok, failed


def _hammer_process(url: str, connections: int, until: float, out) -> None:
    import uvloop

    out.put(uvloop.run(_hammer(url, connections, until)))


def trivial_rate(url: str, *, seconds: float, connections: int, processes: int = 2) -> dict:
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    began = time.time() + 2.0  # the processes start on the same clock
    until = began + seconds
    workers = [
        mp.Process(target=_hammer_process, args=(url, max(1, connections // processes), until, out))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join()
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    elapsed = time.time() - began
    return {"ok": ok, "failed": failed, "seconds": round(elapsed, 1), "per_second": round(ok / elapsed, 1)}


# ---------------------------------------------------------------- the stack


def start_stack(env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the stack
    stack = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one
    )
    deadline = time.time() + 120
    url = f"http://127.0.0.1:{env['PORT']}/healthz"
    while time.time() < deadline:
        if stack.poll() is not None:
            raise SystemExit(f"the stack exited; see {log_path}")
        if b"Ticketing is running" in log_path.read_bytes():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return stack
            except OSError:
                pass
        time.sleep(0.5)
    stop_stack(stack)
    raise SystemExit(f"the stack did not come up in 120 s; see {log_path}")


def stop_stack(stack: subprocess.Popen) -> None:
    if stack.poll() is None:
        os.killpg(stack.pid, signal.SIGTERM)  # run.sh stops every process it started
        try:
            stack.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)


# ---------------------------------------------------------------- main


def main() -> None:
    # A `timeout` or kill still stops the stack (run.sh has a process group of its own).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fans", type=int, default=20000)
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--hold-seconds", type=int, default=30)
    parser.add_argument("--trivial-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--on-sale-in", type=float, default=60.0, help="seconds of pre-queue before the sale opens")
    parser.add_argument("--early", type=float, default=0.5, help="share of fans joining before the sale opens")
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds over which the other fans arrive")
    parser.add_argument("--report", default="", help="report directory (default: a new temporary one)")
    parser.add_argument("simulate", nargs="*", help="more simulate_onsale options, after --")
    args = parser.parse_args()

    port, stripe_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ticketing_onsale_bench"
        ),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "PORT": str(port),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "HOLD_SECONDS": str(args.hold_seconds),
        "CELERY_LOG_LEVEL": "warning",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # Measured as deployed: DEBUG records every SQL query a request runs.
        "DEBUG": os.environ.get("DEBUG", "false"),
    }
    env.pop("STRIPE_SECRET_KEY", None)
    report_dir = Path(args.report or tempfile.mkdtemp(prefix="onsale-bench-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    log_path = report_dir / "stack.log"
    print(f"starting the stack on port {port} (logs: {log_path})", flush=True)
    stack = start_stack(env, log_path)
    try:
        trivial = trivial_rate(
            f"http://127.0.0.1:{port}/healthz", seconds=args.trivial_seconds, connections=args.connections
        )
        print(f"trivial endpoint: GET /healthz {trivial['per_second']} req/s ({trivial})", flush=True)
        began = time.time()
        simulated = subprocess.run(
            [
                PY,
                "manage.py",
                "simulate_onsale",
                "--fans",
                str(args.fans),
                "--tickets",
                str(args.tickets),
                "--base-url",
                f"http://127.0.0.1:{port}",
                "--report",
                str(report_dir),
                "--on-sale-in",
                str(args.on_sale_in),
                "--early",
                str(args.early),
                "--ramp",
                str(args.ramp),
                *args.simulate,
            ],
            cwd=ROOT,
            env=env,
        )
        wall = time.time() - began
    finally:
        stop_stack(stack)
    report_path = report_dir / "onsale-report.json"
    if not report_path.exists():
        raise SystemExit(f"simulate_onsale wrote no report (exit {simulated.returncode})")
    print_figures(json.loads(report_path.read_text()), trivial=trivial, wall=wall)


def print_figures(report: dict, *, trivial: dict, wall: float) -> None:
    rates = report["throughput"]["server_requests_per_s"]
    booking = report["latency_ms"]["booking_request"]
    sold_out = report["timing"]["sold_out_s"]
    bookings_per_s = report["throughput"]["bookings_per_s"]
    checks = [
        ("zero oversell (invariants)", report["invariants"]["result"] == "PASS", report["invariants"]["result"]),
        ("zero server 5xx", report["errors"]["server_5xx"] == 0, report["errors"]["server_5xx"]),
        ("sold out within 120 s of on-sale", sold_out is not None and sold_out <= 120, sold_out),
        ("p99 booking request under 500 ms", booking["p99"] is not None and booking["p99"] < 500, booking["p99"]),
        ("at least 150 bookings/s", bookings_per_s is not None and bookings_per_s >= 150, bookings_per_s),
    ]
    busiest = rates["peak_10s_average"]
    print()
    print(f"=== on-sale benchmark: {report['fans']['total']} fans, {report['tickets']['capacity']} tickets ===")
    print(f"trivial endpoint (GET /healthz, same server):  {trivial['per_second']} req/s")
    print(
        f"server during the on-sale:  {rates['average']} req/s average over {rates['seconds']} s, "
        f"{busiest} req/s busiest 10 s, {rates['peak_1s']} req/s busiest second"
    )
    if trivial["per_second"]:
        print(f"busiest 10 s / trivial:     {busiest / trivial['per_second']:.2f}")
    print(
        f"bookings:  {report['throughput']['bookings_created']} created, {bookings_per_s}/s first to last, "
        f"{report['throughput']['bookings_peak_1s']}/s busiest second"
    )
    print(
        f"whole simulate_onsale run:  {wall:.0f} s (report {report['files']['json']}, chart {report['files']['chart']})"
    )
    print("targets:")
    for name, met, value in checks:
        print(f"  {'met    ' if met else 'NOT met'}  {name}: {value}")


if __name__ == "__main__":
    main()
