"""Live waiting-room connections and the admitter, measured.

    .venv/bin/python benchmarks/waiting_room.py [--fans 1000 10000] [--admit-waiting 100000]

For each N in --fans: one ASGI process (uvicorn, as `make run` starts it)
and, in another process, a load client that opens N Server-Sent Events
streams to it, one per waiting fan. Printed: the time to open them all (each
has its snapshot), the server's resident memory per connection, and, after
one advance of the serving number (one broadcast, every fan moves up a
place), the time until every client has received its new position.

Then the admitter: with --admit-waiting fans in line and tickets for all,
how many fans per second admit_fans moves from waiting to admitted (tokens
written, broadcasts sent).

Uses its own database (BENCH_DATABASE_URL, default .../ticketing_bench) and
Redis database 5 (BENCH_REDIS_URL).
"""

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ticketing_bench")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ["DATABASE_URL"] = BENCH_DB
os.environ["REDIS_URL"] = BENCH_REDIS
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as deployed: DEBUG records every SQL query in memory.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")


# ---------------------------------------------------------------- the load client


async def _stream(host: str, port: int, path: str, key: str, seen: list, index: int, opened: asyncio.Event) -> None:
    """Hold one SSE stream open, counting the status frames it receives."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    tail = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        # Frames arrive whole in one chunk; keep a tail in case a read splits one.
        chunk = tail + data
        count = chunk.count(b"event: status")
        tail = chunk[-16:]
        if count:
            seen[index] = (seen[index][0] + count, time.time())
            if seen[index][0] == 1:
                opened.set()


async def _client(host: str, port: int, path: str, keys: list[str]) -> None:
    seen = [(0, 0.0)] * len(keys)
    events = [asyncio.Event() for _ in keys]
    gate = asyncio.Semaphore(200)  # connections being opened at once
    streams = []  # the event loop keeps only weak references to tasks

    async def open_one(i: int) -> None:
        async with gate:
            streams.append(asyncio.ensure_future(_stream(host, port, path, keys[i], seen, i, events[i])))
            await events[i].wait()

    began = time.time()
    await asyncio.gather(*(open_one(i) for i in range(len(keys))))
    _say({"connected": len(keys), "seconds": time.time() - began})

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)  # "advance <t0>"
    t0 = float(line.split()[1])
    deadline = time.time() + 30
    while time.time() < deadline and any(count < 2 for count, _ in seen):
        await asyncio.sleep(0.01)
    arrivals = sorted(at - t0 for count, at in seen if count >= 2)
    _say({"updated": len(arrivals), "of": len(keys), "arrivals": arrivals})
    os._exit(0)  # drop every open stream at once, as a crowd closing its tabs


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def _raise_open_files_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_client(args) -> None:
    _raise_open_files_limit()
    keys = Path(args.keys).read_text().split()
    import uvloop

    uvloop.run(_client("127.0.0.1", args.port, args.path, keys))


# ---------------------------------------------------------------- setup and server


def setup_django() -> None:
    subprocess.run([sys.executable, "scripts/ensure_services.py"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()


def line_of_fans(*, waiting: int, capacity: int) -> tuple[int, list[int]]:
    """An on-sale event with `waiting` fans in line (numbers 2..waiting+1, serving 0): (event id, fan ids)."""
    from datetime import timedelta
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from ticketing.services import create_event
    from waitlist.models import WaitingRoom

    now = timezone.now()
    event = create_event(
        name=f"waiting-room bench {now.isoformat()}",
        capacity=capacity,
        price=Decimal("10.00"),
        starts_at=now + timedelta(days=1),
        on_sale_at=now - timedelta(minutes=1),
    )
    # No checkout limit: this measures how fast the admitter can go.
    WaitingRoom.objects.filter(event=event).update(opened_at=now, serving_number=0, checkout_limit=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) SELECT '!', false, %s || g, '', '', '', false, true, now() "
            "FROM generate_series(1, %s) g RETURNING id",
            [f"wr-{event.pk}-", waiting],
        )
        fan_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "INSERT INTO waitlist_queueentry (event_id, fan_id, number, state, joined_at) "
            "SELECT %s, f, 1 + row_number() OVER (), 'waiting', now() FROM unnest(%s::bigint[]) f",
            [event.pk, fan_ids],
        )
    return event.pk, fan_ids


def api_keys(fan_ids: list[int]) -> list[str]:
    from django.db import connection

    keys = [secrets.token_hex(20) for _ in fan_ids]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO authtoken_token (key, user_id, created) SELECT k, u, now() "
            "FROM unnest(%s::text[], %s::bigint[]) AS t(k, u)",
            [keys, fan_ids],
        )
    return keys


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_server(port: int) -> subprocess.Popen:
    env = {**os.environ, "DB_POOL_MAX": "8", "DEBUG": "false", "ALLOWED_HOSTS": "*"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
        env=env,
        preexec_fn=_raise_open_files_limit,
    )
    import httpx

    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the ASGI server did not come up")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_connections(fans: int) -> dict:
    from django.conf import settings

    from waitlist import broadcast

    event_id, fan_ids = line_of_fans(waiting=fans, capacity=fans * 4)
    keys_file = Path(f"/tmp/waiting_room_keys_{event_id}.txt")
    keys_file.write_text("\n".join(api_keys(fan_ids)))
    port = free_port()
    server = start_server(port)
    client = None
    try:
        time.sleep(1)  # let the server settle before the baseline
        baseline = rss_kb(server.pid)
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                "--port",
                str(port),
                "--path",
                f"/api/v1/events/{event_id}/queue/stream/",
                "--keys",
                str(keys_file),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        opened = json.loads(client.stdout.readline())
        # Settle, then weigh. Waiting out the far-position interval too means
        # the advance below is due on every screen, however far back.
        time.sleep(max(2.0, settings.SSE_FAR_POSITION_SECONDS))
        per_connection = (rss_kb(server.pid) - baseline) / fans
        t0 = time.time()
        broadcast.room_update(event_id=event_id, serving=1, rate=50.0)
        client.stdin.write(f"advance {t0}\n")
        client.stdin.flush()
        updated = json.loads(client.stdout.readline())
    finally:
        if client is not None:
            client.kill()
        server.terminate()
        server.wait(timeout=10)
        keys_file.unlink(missing_ok=True)
    arrivals = updated["arrivals"]
    return {
        "fans": fans,
        "open_seconds": opened["seconds"],
        "kb_per_connection": per_connection,
        "updated": updated["updated"],
        "p50": arrivals[len(arrivals) // 2] if arrivals else float("nan"),
        "all": arrivals[-1] if len(arrivals) == fans else float("inf"),
    }


def bench_admission(waiting: int, seconds: float = 10.0) -> dict:
    from waitlist.services import admit_fans

    event_id, _ = line_of_fans(waiting=waiting, capacity=waiting * 2)
    began = time.perf_counter()
    admitted = 0
    while admitted < waiting and time.perf_counter() - began < seconds:
        admitted += admit_fans(event_id=event_id)
    elapsed = time.perf_counter() - began
    return {"waiting": waiting, "admitted": admitted, "seconds": elapsed, "per_second": admitted / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fans", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--admit-waiting", type=int, default=100_000)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return

    setup_django()
    results = [bench_connections(n) for n in args.fans]
    print(f"\nmachine: {os.cpu_count()} cores; one uvicorn process; load client in another process")
    print(f"{'streams':>8} {'open s':>7} {'KB/conn':>8} {'updated':>8} {'p50 s':>6} {'all s':>6}")
    for r in results:
        print(
            f"{r['fans']:>8} {r['open_seconds']:>7.1f} {r['kb_per_connection']:>8.1f} {r['updated']:>8} "
            f"{r['p50']:>6.2f} {r['all']:>6.2f}"
        )
    if args.admit_waiting:
        a = bench_admission(args.admit_waiting)
        print(
            f"\nadmitter: {a['admitted']} of {a['waiting']} waiting fans admitted in {a['seconds']:.1f} s "
            f"= {a['per_second']:.0f} fans/s"
        )
    import redis

    redis.Redis.from_url(BENCH_REDIS).flushdb()


if __name__ == "__main__":
    main()
