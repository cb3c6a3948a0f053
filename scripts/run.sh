#!/usr/bin/env bash
# `make run`: Baton on the embedded Redis and the example contracts, plus a local
# webhook sink that receives the example contract's triggers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export BATON_EXAMPLE_HOOK_SECRET="${BATON_EXAMPLE_HOOK_SECRET:-example-secret}"
mkdir -p .baton
"$BIN/baton" check
"$BIN/baton" sink --port 8765 --secret "$BATON_EXAMPLE_HOOK_SECRET" > .baton/sink.log 2>&1 &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
cat <<'MSG'

  Baton is starting on http://127.0.0.1:8000 (status page at /, API docs at /docs),
  with its data in .baton/ and the example contracts in contracts/.
  A webhook sink listens on http://127.0.0.1:8765 (deliveries: .baton/sink.log).

  In another terminal, publish the inputs of one day:
    .venv/bin/baton publish warehouse.orders   --partition 2026-11-23 --meta row_count=12345
    .venv/bin/baton publish warehouse.fx_rates --partition 2026-11-23 --meta row_count=170
  then see what fired and why:
    .venv/bin/baton triggers
    .venv/bin/baton explain revenue_report 2026-11-23
    curl -s http://127.0.0.1:8765/     # what the webhook received

MSG
"$BIN/baton" run
