"""Check Postgres and Redis are reachable and create the database if missing.

Runs before Django is set up (the database may not exist yet), so it reads
DATABASE_URL and REDIS_URL itself, with the same defaults as the settings.
"""

import os
import sys
from urllib.parse import urlparse

import psycopg
import redis
from psycopg import sql

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ticketing")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def fail(message: str) -> None:
    print(f"\n*** {message}\n", file=sys.stderr)
    sys.exit(1)


def ensure_database() -> None:
    url = urlparse(DATABASE_URL)
    name = url.path.lstrip("/")
    params = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password or None,
        "connect_timeout": 5,
    }
    try:
        conn = psycopg.connect(dbname="postgres", autocommit=True, **params)
    except psycopg.OperationalError as exc:
        fail(
            f"PostgreSQL is not reachable at {params['host']}:{params['port']} ({exc}).\n"
            "    Start it (Debian: pg_ctlcluster <version> main start) or set DATABASE_URL, "
            "e.g. DATABASE_URL=postgres://user:pass@host:5432/ticketing"
        )
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def ensure_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        fail(
            f"Redis is not reachable at {REDIS_URL} ({exc}).\n"
            "    Start it (redis-server --daemonize yes) or set REDIS_URL, e.g. REDIS_URL=redis://host:6379/0"
        )


if __name__ == "__main__":
    ensure_database()
    ensure_redis()
    print("postgres and redis: ok")
