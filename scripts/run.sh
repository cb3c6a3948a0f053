#!/usr/bin/env bash
# `make run`: Baton on the embedded Redis and the example contracts, plus a local
# webhook sink that receives the example contracts' triggers.
#
# Stopping: whichever process gets the signal (Ctrl-C, or a SIGINT/SIGTERM/SIGHUP sent
# to make, this script, Baton, the sink or the embedded Redis), everything stops. The
# first of Baton and the sink to end ends this script, which stops the other; Baton
# stops when its embedded Redis ends. GNU make passes SIGTERM on to this script but
# not SIGINT: it waits in its signal handler for us to end, with the signal blocked,
# so the watcher below reads make's blocked signals (Linux /proc) once a second.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export BATON_EXAMPLE_HOOK_SECRET="${BATON_EXAMPLE_HOOK_SECRET:-example-secret}"
mkdir -p .baton
"$BIN/baton" check

children=()
stop_all() {
  trap - EXIT INT TERM HUP
  kill -TERM "${children[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# make (MAKE_PID, from the Makefile) stopping by a signal, or gone, stops us too.
watch_make() {
  local fatal=$(((1 << 0) | (1 << 1) | (1 << 2) | (1 << 14)))  # HUP INT QUIT TERM
  while sleep 1; do
    local status="/proc/$MAKE_PID/status" blocked
    [[ -r $status ]] || break
    blocked=$(awk '/^SigBlk:/ {print $2}' "$status")
    (((16#$blocked & fatal) == 0)) || break
  done
  kill -TERM $$ 2>/dev/null || true
}
if [[ -n ${MAKE_PID:-} && -d /proc/$MAKE_PID ]]; then
  watch_make &
  children+=($!)
fi

"$BIN/baton" sink --port 8765 --secret "$BATON_EXAMPLE_HOOK_SECRET" > .baton/sink.log 2>&1 &
children+=($!)
cat <<'MSG'

  Baton is starting on http://127.0.0.1:8000 (status page at /, API docs at /docs),
  with its data in .baton/ and the example contracts in contracts/.
  A webhook sink listens on http://127.0.0.1:8765 (deliveries: .baton/sink.log).

  In another terminal, publish the inputs of one day (README: "Your first trigger"):
    .venv/bin/baton publish warehouse.orders --partition 2026-11-23 --meta row_count=12345 --event-id orders-2026-11-23
    .venv/bin/baton publish warehouse.fx_rates --partition 2026-11-23 --meta row_count=170 --event-id fx-2026-11-23
  then see what fired and why:
    .venv/bin/baton triggers
    .venv/bin/baton explain revenue_report 2026-11-23
    curl -s 'http://127.0.0.1:8765/?path=/hooks/baton'   # what the webhook received, signed

MSG
"$BIN/baton" run &
children+=($!)
# The first of them to end (or a signal, through the traps above) ends the rest.
wait -n
