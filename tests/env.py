"""Loaded as a pytest plugin (-p tests.env) before Django reads its settings:
the tests use their own Redis database and their own local Stripe server, so
they never disturb a running `make run`."""

import os
import socket

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
if not os.environ.get("TEST_STRIPE_API_BASE"):
    with socket.socket() as _s:
        _s.bind(("127.0.0.1", 0))
        os.environ["TEST_STRIPE_API_BASE"] = f"http://127.0.0.1:{_s.getsockname()[1]}"
os.environ["STRIPE_API_BASE"] = os.environ["TEST_STRIPE_API_BASE"]
os.environ.pop("STRIPE_SECRET_KEY", None)
os.environ.setdefault("THROTTLE_ACCOUNTS", "10000/min")
os.environ.setdefault("THROTTLE_BOOKINGS", "10000/min")
os.environ.setdefault("THROTTLE_QUEUE", "10000/min")
os.environ.setdefault("DB_POOL_MAX", "64")
