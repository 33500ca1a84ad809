#!/usr/bin/env bash
# Stop the bench FreeRADIUS started by start.sh (by its pid file only).
set -euo pipefail
FR_DIR=${FR_DIR:-/tmp/fr-bench}
PIDFILE="$FR_DIR/run/radiusd.pid"
[ -f "$PIDFILE" ] || { echo "not running (no $PIDFILE)"; exit 0; }
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped pid $pid"
else
    echo "pid $pid not running"
fi
rm -f "$PIDFILE"
