import tempfile
import time
from pathlib import Path

# tests/env.py (loaded with -p, before Django reads its settings) points the
# tests at their own Redis database and local Stripe server.
import pytest
import redis
from django.test import TransactionTestCase
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import FanFactory, make_event


@pytest.fixture(scope="session", autouse=True)
def _clean_test_redis():
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def _flush_retrying_deadlocks(original):
    """Test stacks keep running between tests (the beat's admission tick and
    sweeper touch several tables), so the TRUNCATE that ends a transactional
    test can deadlock with them; Postgres then cancels one side. Retry it."""

    def flush(self):
        from django.core.management.base import CommandError
        from django.db import OperationalError

        for attempt in range(5):
            try:
                return original(self)
            except (OperationalError, CommandError) as exc:  # `flush` wraps the database's error
                if "deadlock" not in f"{exc} {exc.__cause__}" or attempt == 4:
                    raise
                time.sleep(0.2)

    return flush


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Real hashing costs ~0.3 s a fan; tests create hundreds of fans.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def log_dir():
    path = Path(tempfile.mkdtemp(prefix="ticketing-test-logs-"))
    yield path


@pytest.fixture(scope="session")
def local_stripe(log_dir):
    from tests.stack import LocalStripe

    stripe = LocalStripe(log_dir)
    yield stripe
    stripe.stop()


@pytest.fixture(scope="session")
def _session_stack(django_db_setup, local_stripe, log_dir):
    from tests.stack import Stack

    running = Stack(log_dir=log_dir, stripe=local_stripe)
    yield running
    running.stop()


@pytest.fixture
def stack(_session_stack, local_stripe):
    """The session's running product: ASGI server, worker, beat (webhooks routed to it)."""
    local_stripe.route_webhooks_to(_session_stack.base_url)
    return _session_stack


@pytest.fixture
def stack_factory(django_db_setup, local_stripe, log_dir):
    """Start a stack with other settings (e.g. a short HOLD_SECONDS) for one test."""
    from tests.stack import Stack

    started = []

    def start(**env):
        # Redis databases 10-15: apart from the session stack's (the tests' own).
        s = Stack(log_dir=log_dir, stripe=local_stripe, redis_db=10 + len(started) % 6, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def fan(db):
    return FanFactory()


@pytest.fixture
def event(db):
    return make_event(tickets=10)


@pytest.fixture
def api(fan):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=fan).key}")
    return client


@pytest.fixture
def staff_client(client):
    """Django's test client, logged in as a superuser (staff in admin)."""
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("staff@example.com", "staff@example.com", "pw")
    client.force_login(staff)
    return client
