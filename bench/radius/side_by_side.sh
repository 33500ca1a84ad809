#!/usr/bin/env bash
# Side by side: FreeRADIUS+SQL then our radiusd, same PostgreSQL, same 100k users, same load generator.
set -u
cd "$(dirname "$0")/../.."
# Needs: bench/freeradius/setup.sh done, and database isp_radius_bench seeded with
# `manage.py seed_scale --customers 100000` under the DEBUG default keys below.
OUT=${OUT:-/tmp/cmp.jsonl}; rm -f "$OUT"
bench/freeradius/start.sh
OUT=$OUT bench/freeradius/measure.sh > /tmp/cmp-fr.log 2>&1
bench/freeradius/stop.sh
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_radius_bench REDIS_URL=redis://127.0.0.1:6379/13 DEBUG=false
export SECRET_KEY=insecure-development-key-only-for-DEBUG
export ENCRYPTION_KEY=$(python3 -c "import base64,hashlib;print(base64.urlsafe_b64encode(hashlib.sha256(b'insecure-development-key-only-for-DEBUG').digest()).decode())")
export RADIUS_REJECT_DELAY_MS=0
taskset -c 0 .venv/bin/python manage.py radiusd --bind 127.0.0.1 --auth-port 18120 --acct-port 18130 --workers 1 --metrics-port 0 > /tmp/cmp-ours-server.log 2>&1 &
SPID=$!
sleep 8
WPID=$(pgrep -P $SPID | head -1); [ -n "$WPID" ] || WPID=$SPID
echo "{\"note\": \"ours rss_kb_start\", \"rss\": $(ps -o rss= -p $WPID) , \"parent_rss\": $(ps -o rss= -p $SPID)}" >> $OUT
OUT=$OUT AUTH=127.0.0.1:18120 ACCT=127.0.0.1:18130 PID=$WPID DB=isp_radius_bench bench/freeradius/measure.sh > /tmp/cmp-ours.log 2>&1
echo "{\"note\": \"ours rss_kb_end\", \"rss\": $(ps -o rss= -p $WPID), \"parent_rss\": $(ps -o rss= -p $SPID)}" >> $OUT
kill $SPID; sleep 2; pkill -f "radiusd --bind 127.0.0.1 --auth-port 18120" || true
echo done >> $OUT
