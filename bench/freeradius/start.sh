#!/usr/bin/env bash
# Start the bench FreeRADIUS (made by setup.sh) in the background, pinned to one core.
#   FR_DIR=/tmp/fr-bench  CPU=0
# Foreground/debug instead: freeradius -X -d /tmp/fr-bench/raddb
set -euo pipefail
FR_DIR=${FR_DIR:-/tmp/fr-bench}
CPU=${CPU:-0}
PIDFILE="$FR_DIR/run/radiusd.pid"
[ -d "$FR_DIR/raddb" ] || { echo "no $FR_DIR/raddb: run bench/freeradius/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
. "$FR_DIR/raddb/bench.env"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "already running: pid $(cat "$PIDFILE")"; exit 0
fi
mkdir -p "$FR_DIR/run" "$FR_DIR/log"
# -f: stay in the foreground (we background it ourselves); -l: server messages to a file
nohup taskset -c "$CPU" freeradius -f -d "$FR_DIR/raddb" -l "$FR_DIR/log/radiusd.out" \
    >"$FR_DIR/log/stdout.log" 2>&1 &
echo $! >"$PIDFILE"
# wait (bounded, 10 s) until the auth port answers a Status-Server
for _ in $(seq 1 50); do
    if echo "Message-Authenticator = 0x00" | radclient -q -r 1 -t 0.2 "127.0.0.1:$AUTH_PORT" status testing123 >/dev/null 2>&1; then
        echo "FreeRADIUS pid $(cat "$PIDFILE") on cpu $CPU: auth 127.0.0.1:$AUTH_PORT acct 127.0.0.1:$ACCT_PORT"
        exit 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.2
done
echo "FreeRADIUS did not come up; see $FR_DIR/log/radiusd.out $FR_DIR/log/stdout.log" >&2
tail -20 "$FR_DIR/log/radiusd.out" "$FR_DIR/log/stdout.log" >&2 || true
exit 1
