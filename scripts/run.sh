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
.venv/bin/uvicorn config.asgi:application --host "${HOST:-127.0.0.1}" --port "$PORT" \
  --workers "${WEB_WORKERS:-2}" --loop uvloop --http httptools --timeout-graceful-shutdown 2 &
pids+=($!)
DB_POOL=false .venv/bin/celery -A config worker --queues admission,celery --loglevel "${CELERY_LOG_LEVEL:-info}" --concurrency "${CELERY_CONCURRENCY:-2}" &
pids+=($!)
# Beat logs every due task (the admission tick is every 2 s): warnings only by default.
DB_POOL=false .venv/bin/celery -A config beat --loglevel "${CELERY_BEAT_LOG_LEVEL:-warning}" --schedule .run/celerybeat-schedule &
pids+=($!)

for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:${PORT}/healthz" > /dev/null 2>&1 && break
  sleep 0.2
done
cat <<MSG

  Ticketing is running:   http://127.0.0.1:${PORT}/
  Demo on-sale event:     http://127.0.0.1:${PORT}/events/$(cat .run/demo_event_id)/
  Staff admin:            http://127.0.0.1:${PORT}/admin/   login ${STAFF_EMAIL:-staff@example.com} / ${STAFF_PASSWORD:-staff-password}
  Payments:               ${payments}
  Health:                 http://127.0.0.1:${PORT}/healthz

  Ctrl-C stops every process started here.

MSG
wait -n "${pids[@]}" || true
echo "a process exited unexpectedly; shutting down the rest (see the log above)"
stop 1
