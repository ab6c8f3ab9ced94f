#!/usr/bin/env bash
# Serve the API on localhost through serverless-offline, as `make run` and `make serve` do.
#   scripts/serve.sh [--demo]
# Uses DATABASE_URL when set; otherwise starts the embedded PostgreSQL under .pgdata/.
# Starts the fake e-commerce platform unless ECOMM_BASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
[[ "${1:-}" == "--demo" ]] && demo=true

export PATH="$PWD/.venv/bin:$PATH"
export PORT="${PORT:-3000}"
export LAMBDA_PORT="${LAMBDA_PORT:-3002}"
FAKE_ECOMM_PORT="${FAKE_ECOMM_PORT:-4010}"

embedded=false
if [[ -z "${DATABASE_URL:-}" ]]; then
  embedded=true
  [[ -d "${PGDATA_DIR:-.pgdata}" ]] || echo "first start: creating the embedded PostgreSQL in ${PGDATA_DIR:-.pgdata}/ (about 10 s)"
  DATABASE_URL="$(python -m scripts.devdb url --data "${PGDATA_DIR:-.pgdata}" --db beerclub)"
  export DATABASE_URL
  echo "embedded PostgreSQL ready (data in ${PGDATA_DIR:-.pgdata}/)"
fi

alembic upgrade head
if $demo; then
  python -m scripts.demo_data
fi

# Where `make billing-run` finds this server's fake platform (and its credentials, local
# fakes only): a git-ignored file, removed when the server stops.
RUN_DIR="${RUN_DIR:-.run}"
mkdir -p "$RUN_DIR"
state="$RUN_DIR/local-server.env"

children=()
stopped=false
cleanup() {
  $stopped && return
  stopped=true
  # Ctrl-C and `kill` reach the whole process group (make too, which may signal again):
  # finish cleaning up whatever arrives now.
  trap '' INT TERM
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -f "$state" ]] && grep -qx "SERVER_PID=$$" "$state"; then rm -f "$state"; fi
  if $embedded; then
    echo "stopped the API and the fake platform; the embedded PostgreSQL keeps running" \
      "(data in ${PGDATA_DIR:-.pgdata}/): \`make db-stop\` stops it, \`make run\` reuses it"
  else
    echo "stopped the API and the fake platform; the database at DATABASE_URL was not started" \
      "by this script and keeps running"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${ECOMM_BASE_URL:-}" ]]; then
  export ECOMM_API_KEY="${ECOMM_API_KEY:-local-api-key}"
  export ECOMM_API_SECRET="${ECOMM_API_SECRET:-local-api-secret}"
  # The fake sends signed webhooks (payment outcomes, /control/webhook events) back to us.
  export WEBHOOK_SECRET="${WEBHOOK_SECRET:-local-webhook-secret}"
  python -m fake_ecommerce --host 127.0.0.1 --port "$FAKE_ECOMM_PORT" \
    --api-key "$ECOMM_API_KEY" --api-secret "$ECOMM_API_SECRET" \
    --webhook-url "http://127.0.0.1:$PORT/webhooks/ecommerce" --webhook-secret "$WEBHOOK_SECRET" &
  children+=("$!")
  export ECOMM_BASE_URL="http://127.0.0.1:$FAKE_ECOMM_PORT"
  umask 077
  cat >"$state" <<STATE
SERVER_PID=$$
API_URL=http://localhost:$PORT
FAKE_ECOMM_URL=$ECOMM_BASE_URL
ECOMM_API_KEY=$ECOMM_API_KEY
ECOMM_API_SECRET=$ECOMM_API_SECRET
STATE
  umask 022
fi

# The scheduled current-status absorber (every minute in the cloud): keeps GET
# /subscription/eligible on its fast path after bulk writes (docs/eligible-cache.md).
python -m scripts.absorb_status --loop &
children+=("$!")

base="http://localhost:$PORT"
cat <<MSG

The API will listen on $base (e-commerce platform: $ECOMM_BASE_URL). Try:
  curl -s $base/clubs
  curl -s $base/subscription/demo-sub-returning
  curl -s $base/subscription/eligible
  curl -s -X POST $base/club/1/subscribe/ -H 'Content-Type: application/json' -d '{"customer_id": "new-customer-1"}'
  curl -s -X POST $base/subscription/demo-sub-active-1/status/ -H 'Content-Type: application/json' -d '{"status_id": 3, "interval": 30, "details": "on holiday"}'
  curl -s -X POST $base/subscription/demo-sub-active-2/charge/demo-request-1
  curl -s localhost:$FAKE_ECOMM_PORT/webhooks     # the platform's signed webhooks back to us
  make billing-run                               # charge everything due now (uses this fake)
  curl -s "$base/promos/eligible?customer_id=demo-customer-1"   # flash promos (docs/promos.md)
The API is ready when serverless-offline prints "Server ready" (about 20 s). Stop with Ctrl-C.

MSG

# Flash promos: serverless-offline runs no schedules, so the announcer runs every minute
# from here; notifications are recorded in .local/promo-notifications.jsonl.
python -m scripts.promo_announcer --every 60 &
children+=("$!")

npx --no-install serverless offline start --noPrependStageInUrl &
children+=("$!")
wait "${children[-1]}"
