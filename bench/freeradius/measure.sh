#!/usr/bin/env bash
# Run the whole measurement once against one server (bounded: about 3 minutes) and append JSON
# lines to $OUT. Expects start.sh to have started FreeRADIUS (pinned to CPU 0); the load
# generator runs pinned to CPU $LG_CPU. Only 127.0.0.1 traffic.
#   AUTH=127.0.0.1:18220 ACCT=127.0.0.1:18230 OUT=/tmp/fr-bench/results.jsonl DUR=15
set -euo pipefail
cd "$(dirname "$0")/../.."
AUTH=${AUTH:-127.0.0.1:18220}
ACCT=${ACCT:-127.0.0.1:18230}
OUT=${OUT:-/tmp/fr-bench/results.jsonl}
DUR=${DUR:-15}
LG_CPU=${LG_CPU:-1}
FR_DIR=${FR_DIR:-/tmp/fr-bench}
PY=${PY:-.venv/bin/python}
LG=(taskset -c "$LG_CPU" timeout 300 "$PY" bench/freeradius/loadgen.py --json)
# server under test (default: the bench FreeRADIUS) and its database, for CPU accounting
PID=${PID:-$(cat "$FR_DIR/run/radiusd.pid")}
DB=${DB:-radius_ref}
HZ=$(getconf CLK_TCK)
# CPU seconds (user+system, all threads) of the server and of the PostgreSQL backends connected to $DB
cpu_of() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$s"; }
pg_pids() { pgrep -f "^postgres: .* $DB " || true; }
note() { echo "{\"note\": \"$1\", \"time\": \"$(date -u +%FT%TZ)\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | tee -a "$OUT"; }
run() {
    note "$1"; shift
    local s0 p0 s1 p1 pgs
    pgs=$(pg_pids); s0=$(cpu_of "$PID"); p0=$(cpu_of $pgs)
    "${LG[@]}" "$@" 2>/dev/null | tee -a "$OUT"
    s1=$(cpu_of "$PID"); p1=$(cpu_of $pgs)
    echo "{\"note\": \"cpu\", \"server_cpu_s\": $(echo "$s0 $s1 $HZ" | awk '{printf "%.2f", ($2-$1)/$3}'), \"postgres_cpu_s\": $(echo "$p0 $p1 $HZ" | awk '{printf "%.2f", ($2-$1)/$3}'), \"pg_backends\": $(echo $pgs | wc -w)}" | tee -a "$OUT"
}

run warmup --target "$AUTH" --kind pap --count 50000 --duration 5 --window 512
run pap-peak --target "$AUTH" --kind pap --count 400000 --duration "$DUR" --window 512 --offset 1000
peak=$(grep answered_per_s "$OUT" | tail -1 | "$PY" -c 'import json,sys; print(int(json.load(sys.stdin)["answered_per_s"]))')
run pap-80pct --target "$AUTH" --kind pap --count 400000 --duration "$DUR" --window 2048 --rate $((peak * 8 / 10)) --offset 2000
run pap-50pct --target "$AUTH" --kind pap --count 400000 --duration "$DUR" --window 2048 --rate $((peak * 5 / 10)) --offset 2500
run pap-ma-peak --target "$AUTH" --kind pap --message-authenticator --count 400000 --duration "$DUR" --window 512 --offset 3000
run pap-reject-peak --target "$AUTH" --kind pap --wrong-password --count 400000 --duration "$DUR" --window 512 --offset 4000
run mschapv2-peak --target "$AUTH" --kind mschapv2 --count 200000 --duration "$DUR" --window 512 --offset 5000
# the storm before accounting: the sessions accounting opens would make a server that enforces
# Simultaneous-Use (ours) reject those users in the storm, and FreeRADIUS's bench config does not check it
run storm-100k --target "$AUTH" --kind pap --storm --users 100000 --window 1024 --timeout 3 --retries 2
run acct-interim --target "$ACCT" --kind acct --sessions 20000 --count 400000 --duration "$DUR" --window 512
pid=$PID
echo "{\"note\": \"server-memory\", \"pid\": $pid, \"VmRSS\": \"$(awk '/VmRSS/{print $2" "$3}' /proc/$pid/status)\", \"VmHWM\": \"$(awk '/VmHWM/{print $2" "$3}' /proc/$pid/status)\"}" | tee -a "$OUT"
