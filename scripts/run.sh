#!/usr/bin/env bash
# `make run`: the whole product on this machine, stopped together on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
PORT="${PORT:-8000}"
export PORT
mkdir -p .run

$PY scripts/ensure_services.py
$PY manage.py migrate --no-input
$PY manage.py seed_demo | tail -n 1 > .run/demo_event_id

# A port already taken would otherwise show up as one line lost in the logs.
ports=("$PORT")
if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  ports+=("$(echo "${STRIPE_API_BASE:-http://127.0.0.1:8420}" | sed -E 's#.*:([0-9]+)/?$#\1#')")
fi
for port in "${ports[@]}"; do
  if ! $PY -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('${HOST:-127.0.0.1}', int(sys.argv[1])))" "$port" 2>/dev/null; then
    echo "make run: port $port is already in use (another make run?). Stop that process or choose another port (PORT=8001 make run; STRIPE_API_BASE=http://127.0.0.1:8421 for the local Stripe server)." >&2
    exit 1
  fi
done

pids=()
stop() {
  local code="${1:-0}"
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped."
  exit "$code"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  export STRIPE_API_BASE="${STRIPE_API_BASE:-http://127.0.0.1:8420}"
  stripe_port=$(echo "$STRIPE_API_BASE" | sed -E 's#.*:([0-9]+)/?$#\1#')
  $PY scripts/localstripe_server.py --port "$stripe_port" > .run/localstripe.log 2>&1 &
  pids+=($!)
  $PY manage.py register_local_webhook --url "http://127.0.0.1:${PORT}/payments/stripe/webhook/"
  payments="local Stripe server at $STRIPE_API_BASE (test cards: 4242424242424242 pays, 4000000000000341 is declined)"
else
  payments="Stripe with your keys (forward webhooks to /payments/stripe/webhook/, e.g. stripe listen --forward-to)"
fi

# uvicorn: Daphne could not keep up with mass SSE connects in our measurements.
# No access log unless ACCESS_LOG=true: a line per request costs the web
# process CPU at an on-sale, and the proxy in front logs requests anyway.
# Idle connections are kept WEB_KEEPALIVE_SECONDS (75), longer than the
# proxy in front keeps its own (nginx's upstream keep-alive and AWS ALB's
# idle timeout are 60 s): uvicorn's own 5 s lets a client or proxy, late by
# a second under load, send a request down a connection the server is closing.
.venv/bin/uvicorn config.asgi:application --host "${HOST:-127.0.0.1}" --port "$PORT" \
  --workers "${WEB_WORKERS:-2}" --loop uvloop --http httptools --timeout-graceful-shutdown 2 \
  --timeout-keep-alive "${WEB_KEEPALIVE_SECONDS:-75}" \
  $([ "${ACCESS_LOG:-false}" = true ] || echo --no-access-log) &
pids+=($!)
DB_POOL=false .venv/bin/celery -A config worker --queues admission,celery --loglevel "${CELERY_LOG_LEVEL:-warning}" --concurrency "${CELERY_CONCURRENCY:-2}" &
pids+=($!)
# Worker and beat log every task (the admission tick runs every 2 s): warnings
# only by default, so the URLs below and real errors stay on screen.
DB_POOL=false .venv/bin/celery -A config beat --loglevel "${CELERY_BEAT_LOG_LEVEL:-warning}" --schedule .run/celerybeat-schedule &
pids+=($!)

up=""
for _ in $(seq 1 150); do
  if curl -fs "http://127.0.0.1:${PORT}/healthz" > /dev/null 2>&1; then up=1; break; fi
  sleep 0.2
done
if [ -z "$up" ]; then
  echo "make run: the web server did not answer http://127.0.0.1:${PORT}/healthz within 30 s (see the log above)." >&2
  stop 1
fi
cat <<MSG

  Ticketing is running:   http://127.0.0.1:${PORT}/
  Demo on-sale event:     http://127.0.0.1:${PORT}/events/$(cat .run/demo_event_id)/
  Staff admin:            http://127.0.0.1:${PORT}/admin/   login ${STAFF_EMAIL:-staff@example.com} / ${STAFF_PASSWORD:-staff-password}
  Payments:               ${payments}
  Health:                 http://127.0.0.1:${PORT}/healthz

  Ctrl-C stops every process started here.

MSG
status=0
wait -n "${pids[@]}" || status=$?
# Ctrl-C reaches every process at once: give this shell's own trap (a clean
# stop) the chance to run before calling it a crash.
sleep 1
# A shell started with SIGINT ignored (in the background of another script)
# cannot trap it, but its processes still stop on it: one that ended cleanly
# or on SIGINT/SIGTERM was told to stop, not crashed.
case "$status" in
  0 | 130 | 143)
    echo "a process stopped (status $status); stopping the rest" >&2
    stop 0
    ;;
esac
echo "a process exited unexpectedly (status $status); shutting down the rest (see the log above)" >&2
stop 1
