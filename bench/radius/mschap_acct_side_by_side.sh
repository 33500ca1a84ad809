#!/usr/bin/env bash
# MS-CHAPv2 and interim accounting alone, each server fresh, back to back.
set -u
cd "$(dirname "$0")/../.."
OUT=/tmp/mschap.jsonl; rm -f $OUT
LG="taskset -c 1 timeout 120 .venv/bin/python bench/freeradius/loadgen.py --json"
bench/freeradius/start.sh >/dev/null
$LG --target 127.0.0.1:18220 --kind pap --count 50000 --duration 5 --window 512 >/dev/null
echo '{"server":"freeradius"}' >> $OUT
$LG --target 127.0.0.1:18220 --kind mschapv2 --count 200000 --duration 15 --window 512 --offset 7000 >> $OUT
$LG --target 127.0.0.1:18230 --kind acct --sessions 20000 --count 400000 --duration 15 --window 512 --offset 9000 >> $OUT
bench/freeradius/stop.sh >/dev/null
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_radius_bench REDIS_URL=redis://127.0.0.1:6379/13 DEBUG=false
export SECRET_KEY=insecure-development-key-only-for-DEBUG
export ENCRYPTION_KEY=$(python3 -c "import base64,hashlib;print(base64.urlsafe_b64encode(hashlib.sha256(b'insecure-development-key-only-for-DEBUG').digest()).decode())")
export RADIUS_REJECT_DELAY_MS=0
taskset -c 0 .venv/bin/python manage.py radiusd --bind 127.0.0.1 --auth-port 18120 --acct-port 18130 --workers 1 --metrics-port 0 > /tmp/mschap-server.log 2>&1 &
SPID=$!
sleep 8
$LG --target 127.0.0.1:18120 --kind pap --count 50000 --duration 5 --window 512 >/dev/null
sleep 5
echo '{"server":"ours"}' >> $OUT
$LG --target 127.0.0.1:18120 --kind mschapv2 --count 200000 --duration 15 --window 512 --offset 7000 >> $OUT
sleep 5
$LG --target 127.0.0.1:18130 --kind acct --sessions 20000 --count 400000 --duration 15 --window 512 --offset 9100 >> $OUT
echo "{\"rss_kb\": $(ps -o rss= -p $SPID)}" >> $OUT
kill $SPID; sleep 2
echo '{"done":1}' >> $OUT
