"""Real processes for tests that cross process boundaries.

A Stack is an ASGI server (uvicorn), a Celery worker and Celery beat, all
pointed at the pytest database and the test Redis database, with webhooks
from the session's local Stripe server routed to this server.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception:  # noqa: BLE001 - the thing is not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def database_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Process:
    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig=signal.SIGKILL):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def base_env(**overrides) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "STRIPE_API_BASE": settings.STRIPE_API_BASE,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        "ADMISSION_TICK_SECONDS": "1",
        "HOLD_SWEEP_SECONDS": "2",
        "DB_POOL_MAX": "4",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("STRIPE_SECRET_KEY", None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class LocalStripe:
    def __init__(self, log_dir: Path):
        self.url = settings.STRIPE_API_BASE
        port = self.url.rsplit(":", 1)[1].strip("/")
        self.process = Process(
            "localstripe",
            [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", port],
            dict(os.environ),
            log_dir,
        )
        wait_for(
            lambda: httpx.get(f"{self.url}/v1/customers", auth=("sk_test_local", ""), timeout=1).status_code < 500,
            timeout=20,
            what="localstripe",
        )

    def route_webhooks_to(self, base_url: str) -> None:
        httpx.post(
            f"{self.url}/_config/webhooks/ticketing",
            data={"url": f"{base_url}/payments/stripe/webhook/", "secret": settings.STRIPE_WEBHOOK_SECRET},
            timeout=5,
        ).raise_for_status()

    def get(self, path: str) -> dict:
        response = httpx.get(f"{self.url}{path}", auth=("sk_test_local", ""), timeout=5)
        response.raise_for_status()
        return response.json()

    def stop(self):
        self.process.stop()


class Stack:
    def __init__(
        self, *, log_dir: Path, stripe: LocalStripe, beat: bool = True, redis_db: int | None = None, **env_overrides
    ):
        """`redis_db`: a Redis database of its own, so this stack's worker never
        takes tasks meant for another stack running at the same time."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if redis_db is not None:
            env_overrides["REDIS_URL"] = settings.REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db}"
        self.env = base_env(PORT=self.port, **env_overrides)
        redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()
        self.log_dir = log_dir
        self.processes: dict[str, Process] = {}
        try:
            self._start(stripe=stripe, beat=beat)
        except BaseException:
            self.stop()  # a stack that failed to start leaves nothing running
            raise

    def _start(self, *, stripe: LocalStripe, beat: bool) -> None:
        self.processes["web"] = self._web(self.port, "web")
        self.start_worker()
        if beat:
            self.processes["beat"] = Process(
                "beat",
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "beat",
                    "--loglevel",
                    "info",
                    "--schedule",
                    str(self.log_dir / f"beat-{self.port}.db"),
                ],
                {**self.env, "DB_POOL": "false"},
                self.log_dir,
            )
        wait_for(
            lambda: httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200,
            timeout=30,
            what=f"the ASGI server\n{self.processes['web'].tail()}",
        )
        stripe.route_webhooks_to(self.base_url)

    def _web(self, port: int, name: str) -> Process:
        return Process(
            name,
            [
                str(BIN / "uvicorn"),
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--timeout-graceful-shutdown",
                "1",
            ],
            self.env,
            self.log_dir,
        )

    def add_web(self, name: str) -> str:
        """Another ASGI process on its own port, as behind a load balancer; returns its base URL."""
        port = free_port()
        self.processes[name] = self._web(port, name)
        base_url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200,
            timeout=30,
            what=f"the ASGI server {name}\n{self.processes[name].tail()}",
        )
        return base_url

    def start_worker(self, name: str = "worker") -> Process:
        process = Process(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--queues",
                "admission,celery",
                "--loglevel",
                "info",
                "--concurrency",
                "2",
                "--hostname",
                f"{name}-{self.port}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            {**self.env, "DB_POOL": "false"},
            self.log_dir,
        )
        self.processes[name] = process
        wait_for(
            lambda: b"ready" in process.log_path.read_bytes(), timeout=30, what=f"the Celery worker\n{process.tail()}"
        )
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{p.tail()}" for name, p in self.processes.items())

    def stop(self):
        for process in self.processes.values():
            process.stop()
