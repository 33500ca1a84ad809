#!/usr/bin/env bash
# Side by side in one run: FreeRADIUS+SQL (stock post-auth INSERT into radpostauth, the
# issue's reference), FreeRADIUS+SQL without it, and our radiusd. Same PostgreSQL, same
# 100,000 users, same load generator (bench/freeradius/measure.sh: PAP peak, PAP at 80 % and
# 50 % of the server's own peak, PAP + Message-Authenticator, rejects, MS-CHAPv2, durable
# interim accounting, and the reconnect storm of 100,000 distinct users), each server pinned
# to core 0 and the load generator to core 1.
#
# Needs: bench/freeradius/setup.sh (FR_DIR=/tmp/fr-bench) and
#        FR_DIR=/tmp/fr-bench-pa POSTAUTH_SQL=1 bench/freeradius/setup.sh,
#        and database isp_radius_bench seeded with `manage.py seed_scale --customers 100000`
#        (see bench/radius/README.md) under the keys below.
#   OUT=/tmp/cmp.jsonl SERVERS="fr-postauth fr ours" DUR=15 bench/radius/side_by_side.sh
#   python3 bench/freeradius/summarize.py /tmp/cmp-*.jsonl
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/cmp.jsonl}
SERVERS=${SERVERS:-fr-postauth fr ours}
export DUR=${DUR:-15} PY
base=${OUT%.jsonl}
psql_q() { psql -X -q -h 127.0.0.1 -U postgres "$@"; }

# every server starts from the same state: no open sessions, empty logs
reset_dbs() {
    psql_q -d radius_ref -c "TRUNCATE radacct, radpostauth RESTART IDENTITY"
    psql_q -d isp_radius_bench -c \
        "TRUNCATE radius_accountingsession, radius_dailyusage, radius_authlog, radius_dynamicauthrequest"
    psql_q -d isp_radius_bench -c "VACUUM ANALYZE radius_accountingsession"
    psql_q -d radius_ref -c "VACUUM ANALYZE radacct"
}

run_freeradius() {  # $1 label, $2 FR_DIR
    local out="$base-$1.jsonl"
    rm -f "$out"
    reset_dbs
    FR_DIR=$2 bench/freeradius/start.sh
    echo "{\"note\": \"server $1\", \"time\": \"$(date -u +%FT%TZ)\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$out"
    OUT=$out FR_DIR=$2 bench/freeradius/measure.sh > "$base-$1.log" 2>&1
    FR_DIR=$2 bench/freeradius/stop.sh
}

run_ours() {
    local out="$base-ours.jsonl" spid rss
    # radiusd binds with SO_REUSEPORT: a server left running on these ports would silently
    # take a share of the requests
    if ss -Hulnp | grep -qE ':(18120|18130) '; then echo "ports 18120/18130 already in use" >&2; exit 1; fi
    rm -f "$out"
    reset_dbs
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_radius_bench REDIS_URL=redis://127.0.0.1:6379/13
    export DEBUG=false SECRET_KEY=insecure-development-key-only-for-DEBUG RADIUS_REJECT_DELAY_MS=0
    ENCRYPTION_KEY=$(python3 -c "import base64,hashlib;print(base64.urlsafe_b64encode(hashlib.sha256(b'insecure-development-key-only-for-DEBUG').digest()).decode())")
    export ENCRYPTION_KEY
    # --workers 1 serves in the radiusd process itself (no child): its RSS is the total
    taskset -c 0 "$PY" manage.py radiusd --bind 127.0.0.1 --auth-port 18120 --acct-port 18130 --workers 1 \
        --metrics-port 0 > "$base-ours-server.log" 2>&1 &
    spid=$!
    for _ in $(seq 1 60); do grep -q "listening on" "$base-ours-server.log" && break; sleep 0.5; done
    rss=$(awk '/VmRSS/{print $2}' /proc/$spid/status)
    echo "{\"note\": \"server ours\", \"time\": \"$(date -u +%FT%TZ)\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"rss_kb_after_start\": $rss}" >> "$out"
    OUT=$out AUTH=127.0.0.1:18120 ACCT=127.0.0.1:18130 PID=$spid DB=isp_radius_bench \
        bench/freeradius/measure.sh > "$base-ours.log" 2>&1
    "$PY" manage.py radiusd --stats > "$base-ours-stats.txt" 2>&1
    kill -TERM "$spid"
    wait "$spid"
}

for server in $SERVERS; do
    case $server in
        fr-postauth) run_freeradius fr-postauth /tmp/fr-bench-pa ;;
        fr) run_freeradius fr /tmp/fr-bench ;;
        ours) run_ours ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
done
python3 bench/freeradius/summarize.py $(for s in $SERVERS; do echo "$base-$s.jsonl"; done)
