"""Reservations per second from 8 and 64 concurrent connections, beside pgbench.

    .venv/bin/python benchmarks/reserve.py [--seconds 10] [--connections 8 64] [--rounds 3]

Runs the product's reservation service (bookings.reservation.reserve_tickets:
spend an access token, take tickets from an inventory bucket, insert the
booking, in one transaction) against one event, from worker processes that
each drive several connections. In the same run, on the same database,
pgbench measures the floor Postgres sets: a conditional decrement plus
insert as one statement, on one counter row and spread over 16 rows.
Every figure is taken --rounds times, the three kinds taking turns, each
from a freshly vacuumed and checkpointed database; the medians are printed,
with the range of the per-round ratios. Uses its own database (BENCH_DATABASE_URL, default .../ticketing_bench).
"""

import argparse
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ticketing_bench")
os.environ["DATABASE_URL"] = BENCH_DB
# Its own broker database: the expiry tasks of benchmark bookings must never
# reach the workers of a running `make run`.
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ["REDIS_URL"] = BENCH_REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as deployed: DEBUG records every SQL query in memory.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("DB_POOL_MAX", "64")
os.environ.setdefault("LOG_LEVEL", "WARNING")

TICKETS = 10_000_000


def setup_database(tokens: int) -> tuple[int, list[tuple[int, str]]]:
    """Create the database, an event and `tokens` admitted fans; returns (event id, [(fan id, token)])."""
    env = {**os.environ, "DATABASE_URL": BENCH_DB}
    subprocess.run([sys.executable, "scripts/ensure_services.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from datetime import timedelta
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from ticketing.services import create_event
    from waitlist.tokens import sign_token

    now = timezone.now()
    event = create_event(
        name=f"bench {now.isoformat()}",
        capacity=TICKETS,
        price=Decimal("10.00"),
        starts_at=now + timedelta(days=1),
        on_sale_at=now - timedelta(minutes=1),
    )
    with connection.cursor() as cursor:
        # Fans, queue entries and access tokens in bulk, as the admitter would leave them.
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) SELECT '!', false, %s || g, '', '', '', false, true, now() "
            "FROM generate_series(1, %s) g RETURNING id",
            [f"bench-{event.pk}-", tokens],
        )
        fan_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "INSERT INTO waitlist_queueentry (event_id, fan_id, number, state, joined_at, admitted_at) "
            "SELECT %s, f, row_number() OVER (), 'admitted', now(), now() FROM unnest(%s::bigint[]) f "
            "RETURNING id, fan_id",
            [event.pk, fan_ids],
        )
        entries = cursor.fetchall()
        cursor.execute(
            "INSERT INTO waitlist_accesstoken (id, entry_id, event_id, fan_id, issued_at, expires_at) "
            "SELECT gen_random_uuid(), e, %s, f, now(), now() + interval '1 hour' "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS t(e, f) RETURNING id, fan_id",
            [event.pk, [e for e, _ in entries], [f for _, f in entries]],
        )
        rows = cursor.fetchall()
    return event.pk, [(fan_id, sign_token(token_id=tid, event_id=event.pk, fan_id=fan_id)) for tid, fan_id in rows]


def worker(event_id: int, work: list[tuple[int, str]], threads: int, start_at: float, seconds: float, out) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bookings.reservation import reserve_tickets
    from ticketing.models import Event

    event = Event.objects.get(pk=event_id)
    connection.close()
    User = get_user_model()
    counts = [0] * threads
    errors = [0] * threads
    latencies: list[float] = []

    def run(t: int) -> None:
        mine = work[t::threads]
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        for i, (fan_id, token) in enumerate(mine):
            if time.time() >= deadline:
                break
            began = time.perf_counter()
            try:
                reserve_tickets(event=event, fan=User(pk=fan_id), quantity=1 + i % 4, access_token=token)
                counts[t] += 1
            except Exception:  # noqa: BLE001 - counted and reported
                errors[t] += 1
            latencies.append(time.perf_counter() - began)
        connection.close()

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    out.put((sum(counts), sum(errors), latencies))


def bench_reserve(event_id: int, tokens: list, connections: int, seconds: float, processes: int) -> dict:
    processes = min(connections, processes)
    per_process = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    # spawn: forked children would share the parent's pooled sockets.
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3  # every process connected and waiting
    chunk = len(tokens) // processes
    procs = [
        ctx.Process(
            target=worker,
            args=(event_id, tokens[i * chunk : (i + 1) * chunk], per_process[i], start_at, seconds, out),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    done = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    return {
        "per_second": done / seconds,
        "errors": sum(r[1] for r in results),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0,
    }


PGBENCH_SETUP = """
DROP TABLE IF EXISTS bench_ledger, bench_counter;
CREATE TABLE bench_counter (id int PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0));
CREATE TABLE bench_ledger (id bigserial PRIMARY KEY, counter_id int NOT NULL, at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_counter SELECT g, 1000000000 FROM generate_series(1, 16) g;
"""
PGBENCH_SCRIPT = """\\set r random(1, {rows})
WITH d AS (UPDATE bench_counter SET available = available - 1 WHERE id = :r AND available >= 1 RETURNING id)
INSERT INTO bench_ledger (counter_id) SELECT id FROM d;
"""


def pgbench_command() -> str:
    """pgbench on PATH, else the one beside the server's other binaries (Debian keeps it off PATH)."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        candidates = [Path(bindir) / "pgbench"]
    except (OSError, subprocess.CalledProcessError):
        candidates = []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    sys.exit("pgbench not found: install PostgreSQL's client tools (Debian: postgresql-contrib)")


def quiesce() -> None:
    """Start every figure from the same state: tables vacuumed and analysed, dirty pages checkpointed.

    Without this a figure can pay for the previous one's dead rows and
    statistics (autovacuum may be off, or may start in the middle of the next
    measurement on two cores), and the figures swing by half between runs.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        for table in QUIESCED_TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")
    connection.close()


QUIESCED_TABLES = (
    "bookings_booking",
    "waitlist_accesstoken",
    "waitlist_queueentry",
    "ticketing_inventorybucket",
    "bench_counter",
    "bench_ledger",
)


def pgbench(rows: int, connections: int, seconds: float) -> float:
    url = urlparse(BENCH_DB)
    args = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(PGBENCH_SCRIPT.format(rows=rows))
    result = subprocess.run(
        [
            pgbench_command(),
            *args,
            "-n",
            "-c",
            str(connections),
            "-j",
            "2",
            "-T",
            str(int(seconds)),
            "-f",
            fh.name,
            url.path.lstrip("/"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every figure this many times, taking turns, and report the medians (default 3)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count(),
        help="service processes the connections are spread over (default: one per core, as deployed)",
    )
    args = parser.parse_args()
    pgbench_command()  # fail before the long set-up, not after it

    shares = args.rounds * len(args.connections)
    per_share = int(6000 * args.seconds)
    print(f"setting up {per_share * shares} admitted fans ...", flush=True)
    event_id, tokens = setup_database(per_share * shares)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(PGBENCH_SETUP)
    connection.close()

    # figures[c] = {"reserve": [...], "one": [...], "sixteen": [...]}, one entry per round
    figures = {c: {"reserve": [], "one": [], "sixteen": []} for c in args.connections}
    share = 0
    for round_no in range(1, args.rounds + 1):
        for c in args.connections:
            quiesce()
            work = tokens[share * per_share : (share + 1) * per_share]
            share += 1
            figures[c]["reserve"].append(bench_reserve(event_id, work, c, args.seconds, args.processes))
            quiesce()
            figures[c]["one"].append(pgbench(1, c, args.seconds))
            quiesce()
            figures[c]["sixteen"].append(pgbench(16, c, args.seconds))
            r = figures[c]["reserve"][-1]
            print(
                f"round {round_no}, {c} connections: reserve {r['per_second']:.0f}/s, "
                f"pgbench 1 row {figures[c]['one'][-1]:.0f}/s, 16 rows {figures[c]['sixteen'][-1]:.0f}/s",
                flush=True,
            )

    from django.conf import settings

    mode = (
        f"group commit up to {settings.RESERVATION_BATCH_MAX} per transaction"
        if settings.RESERVATION_GROUP_COMMIT
        else "one transaction per reservation"
    )
    print(
        f"\nmachine: {os.cpu_count()} cores; {args.seconds:.0f} s per figure; median of {args.rounds} rounds; "
        f"database {urlparse(BENCH_DB).path[1:]}; {args.processes} service processes; {mode}"
    )
    print(
        f"{'conns':>5} {'reserve/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'pgbench 1 row':>14} "
        f"{'pgbench 16 rows':>16} {'reserve / 16-row':>17} {'per round':>18}"
    )
    medians = {}
    for c in args.connections:
        f = figures[c]
        reserve = statistics.median(r["per_second"] for r in f["reserve"])
        one, sixteen = statistics.median(f["one"]), statistics.median(f["sixteen"])
        medians[c] = (reserve, one)
        per_round = [r["per_second"] / s for r, s in zip(f["reserve"], f["sixteen"], strict=True)]
        print(
            f"{c:>5} {reserve:>10.0f} {statistics.median(r['p50_ms'] for r in f['reserve']):>7.1f} "
            f"{statistics.median(r['p99_ms'] for r in f['reserve']):>7.1f} {sum(r['errors'] for r in f['reserve']):>6} "
            f"{one:>14.0f} {sixteen:>16.0f} {reserve / sixteen:>16.0%} "
            f"{min(per_round):>8.0%} to {max(per_round):.0%}"
        )
    import redis

    redis.Redis.from_url(BENCH_REDIS).flushdb()  # the benchmark's own expiry tasks
    if len(args.connections) >= 2:
        first, last = args.connections[0], args.connections[-1]
        change = medians[last][0] / medians[first][0] - 1
        one_change = medians[last][1] / medians[first][1] - 1
        print(
            f"\nreservations per second from {first} to {last} connections: {change:+.0%} "
            f"(pgbench on one counter row: {one_change:+.0%}; negative is a loss)"
        )


if __name__ == "__main__":
    main()
