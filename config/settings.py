"""One settings module, driven by the environment with development defaults.

Integrations switch on by the presence of their keys: with no STRIPE_SECRET_KEY
the product talks to a local Stripe server (localstripe) at STRIPE_API_BASE.
"""

from pathlib import Path
from urllib.parse import urlparse

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-secret-key-change-me-in-production")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "channels",
    "ticketing",
    "waitlist",
    "bookings",
    "payments",
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (admin CSS) from the ASGI process itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Admission control per ASGI process (config.load_shedding): requests run at
# once in each lane, requests that may wait for a slot (a coroutine each,
# not a thread), and for how long, before a 503. A request holds a pooled
# database connection from its first query to its end, so the pool below
# has one per slot of every lane: a request that has a slot seldom waits for
# a connection (short of /healthz and session-authenticated stream connects,
# which borrow one briefly outside the lanes), and the checkout lane's
# requests do not queue for one behind the crowd joining the line.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=8)
# The general lane (joins, pages, everything but checkout and webhooks) gets
# fewer: measured on 2 cores (6,000 fans for 1,500 tickets), 2 instead of 8
# halved the booking request's latency and the 503s on joins.
WEB_GENERAL_CONCURRENCY = env.int("WEB_GENERAL_CONCURRENCY", default=max(2, WEB_CONCURRENCY // 4))
WEB_QUEUE = env.int("WEB_QUEUE", default=10000)
WEB_QUEUE_SECONDS = env.float("WEB_QUEUE_SECONDS", default=30.0)

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL is the only source of truth. Django's native psycopg pool keeps
# warm connections per process: one per request slot (see WEB_CONCURRENCY).
DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ticketing"),
}
DATABASES["default"].setdefault("OPTIONS", {})
if env.bool("DB_POOL", default=True):
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=1),
        "max_size": env.int("DB_POOL_MAX", default=2 * WEB_CONCURRENCY + WEB_GENERAL_CONCURRENCY),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # Celery's prefork children must not share a pool's sockets with their
    # parent: they keep one persistent connection each instead.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Let psycopg prepare the statements run through server-side binding cursors
# (the reservation hot path); Django's own client-binding cursors never are.
DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
# Every query here is a short indexed read or write. Postgres's JIT compiles
# any plan whose estimate passes jit_above_cost, and bulk-loaded tables with
# stale statistics get such estimates: measured, a 0.5 ms read became 40 ms.
DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")
if env("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis carries news only (broker, channel layer, cache): nothing that cannot
# be rebuilt from Postgres.
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"pool_class": "config.redis_pool.SharedConnectionPool"},
    }
}

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer: one publish reaches every ASGI process, instead
        # of a loop over group members (see ARCHITECTURE.md).
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Redis pub/sub ignores database numbers: the prefix keeps a test run
        # or a benchmark (its own REDIS_URL database) off a running server's
        # channels.
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"asgi.{urlparse(REDIS_URL).path.strip('/') or 0}"},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Admission gets its own queue so a backlog of hold expiries (a big on-sale
# schedules one batch per few ms) never delays letting fans in.
CELERY_TASK_ROUTES = {"waitlist.tasks.*": {"queue": "admission"}}
# Safety nets for lost wake-ups and lost countdown tasks.
ADMISSION_TICK_SECONDS = env.float("ADMISSION_TICK_SECONDS", default=2.0)
# Admission paced by checkout (waitlist.pacing): under the room's checkout
# limit, the window of admitted fans who have not booked yet narrows while
# more than CHECKOUT_SLOW_SHARE of checkout's requests over the last
# CHECKOUT_LOAD_SECONDS took longer than CHECKOUT_SLOW_SECONDS, and widens
# while checkout is quick and the window is in use.
CHECKOUT_PACING = env.bool("CHECKOUT_PACING", default=True)
CHECKOUT_SLOW_SECONDS = env.float("CHECKOUT_SLOW_SECONDS", default=0.25)
CHECKOUT_SLOW_SHARE = env.float("CHECKOUT_SLOW_SHARE", default=0.05)
CHECKOUT_LOAD_SECONDS = env.int("CHECKOUT_LOAD_SECONDS", default=3)
CHECKOUT_WINDOW_START = env.int("CHECKOUT_WINDOW_START", default=50)
CHECKOUT_WINDOW_MIN = env.int("CHECKOUT_WINDOW_MIN", default=20)
CHECKOUT_WINDOW_STEP_SECONDS = env.float("CHECKOUT_WINDOW_STEP_SECONDS", default=1.0)
HOLD_SWEEP_SECONDS = env.float("HOLD_SWEEP_SECONDS", default=15.0)
CELERY_BEAT_SCHEDULE = {
    "admission-tick": {
        "task": "waitlist.tasks.admission_tick",
        "schedule": ADMISSION_TICK_SECONDS,
    },
    "sweep-overdue-holds": {
        "task": "bookings.tasks.sweep_overdue_holds",
        "schedule": HOLD_SWEEP_SECONDS,
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "event-list"
LOGOUT_REDIRECT_URL = "event-list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# In development whitenoise serves straight from the apps' static folders.
WHITENOISE_USE_FINDERS = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.api_auth.FastTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api_parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {
        "accounts": env("THROTTLE_ACCOUNTS", default="120/min"),
        "bookings": env("THROTTLE_BOOKINGS", default="30/min"),
        "queue": env("THROTTLE_QUEUE", default="30/min"),
    },
}

# The on-sale's clocks.
HOLD_SECONDS = env.int("HOLD_SECONDS", default=300)
# Expiry tasks for holds committed within this window go to the broker as one.
HOLD_EXPIRY_BATCH_SECONDS = env.float("HOLD_EXPIRY_BATCH_SECONDS", default=0.1)
ACCESS_TOKEN_TTL_SECONDS = env.int("ACCESS_TOKEN_TTL_SECONDS", default=300)
# Tokens are checked against the database clock; this covers skew between
# the clocks of the web and worker machines.
ACCESS_TOKEN_LEEWAY_SECONDS = env.int("ACCESS_TOKEN_LEEWAY_SECONDS", default=5)
# Reservations in flight in one process at the same moment share one
# transaction and one commit (bookings.group_commit), up to this many.
RESERVATION_GROUP_COMMIT = env.bool("RESERVATION_GROUP_COMMIT", default=True)
RESERVATION_BATCH_MAX = env.int("RESERVATION_BATCH_MAX", default=64)
# Inventory is split over this many rows per event so reservations do not all
# queue on one row lock.
INVENTORY_BUCKETS = env.int("INVENTORY_BUCKETS", default=16)
# SSE: heartbeat comment period and the reconnect hint (jittered per client).
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15.0)
SSE_RETRY_MS = env.int("SSE_RETRY_MS", default=3000)
# Room news (the line moved) reaches an event's streams at most this often.
SSE_ROOM_NEWS_SECONDS = env.float("SSE_ROOM_NEWS_SECONDS", default=1.0)
# Fans far back in a long line get a position frame at most every
# SSE_FAR_POSITION_SECONDS: at 20,000 fans, a frame to every stream each
# second took two thirds of the web processes' CPU away from checkout. Fans
# near the front (at most SSE_NEAR_POSITIONS places or SSE_NEAR_ETA_SECONDS
# from their turn) see every move; admission, expiry and close are never held.
SSE_FAR_POSITION_SECONDS = env.float("SSE_FAR_POSITION_SECONDS", default=5.0)
SSE_NEAR_POSITIONS = env.int("SSE_NEAR_POSITIONS", default=100)
SSE_NEAR_ETA_SECONDS = env.int("SSE_NEAR_ETA_SECONDS", default=60)
# How often each ASGI process re-reads the serving number of the rooms its
# fans watch: the longest a broadcast lost with Redis can delay a screen.
SSE_REFRESH_SECONDS = env.float("SSE_REFRESH_SECONDS", default=5.0)

# Stripe. With no secret key we run against a local Stripe server.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="whsec_local_development_secret")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="" if STRIPE_SECRET_KEY else "http://127.0.0.1:8420")
# The local Stripe server accepts any key; these fixed values make that explicit.
STRIPE_LOCAL = not STRIPE_SECRET_KEY or bool(STRIPE_API_BASE)
if not STRIPE_SECRET_KEY:
    STRIPE_SECRET_KEY = "sk_test_local"
    STRIPE_PUBLISHABLE_KEY = STRIPE_PUBLISHABLE_KEY or "pk_test_local"
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's default config gives "django" a console handler of its own
        # (with DEBUG on): every 4xx was printed twice, once without a time.
        "django": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # The Stripe SDK logs every API call at INFO.
        "stripe": {"level": "WARNING"},
    },
}
