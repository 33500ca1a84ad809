#!/usr/bin/env bash
# Reference FreeRADIUS 3.2 + rlm_sql (PostgreSQL) for benchmarking our RADIUS server.
#
# Idempotent: installs the Debian packages if missing, (re)creates the schema of the
# database radius_ref if needed, reloads USERS radcheck/radreply rows with COPY, and
# rewrites a self-contained FreeRADIUS config directory in $FR_DIR (copied from
# /etc/freeradius/3.0). Nothing under /etc is modified.
#
# Environment (all optional):
#   USERS=100000            users user000001.. with Cleartext-Password pw000001..
#   FR_DIR=/tmp/fr-bench    config + run + log directory
#   AUTH_PORT=18220 ACCT_PORT=18230   (18120/18130 are used by bench/radius for our own server)
#   INNER_PORT=18240        the stock inner-tunnel's localhost listener (EAP only; unused)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGDB=radius_ref
#   SQL_POOL=16             rlm_sql connections (start=min=spare=max, no ramp-up during a run)
#   THREADS=16              FreeRADIUS worker threads (fixed pool)
#   POSTAUTH_SQL=0          1 = keep the stock "INSERT INTO radpostauth" per Access-Request
#   RESET_ACCT=0            1 = TRUNCATE radacct
#   RECV_BUFF=4194304       listen recv_buff (SO_RCVBUF; the kernel caps it at net.core.rmem_max)
#   RELOAD=0                1 = reload radcheck/radreply even if they already hold USERS rows
#
# Benchmark-only deviations from the stock Debian config (each stated here and in
# docs/bench-freeradius.md):
#   * security.reject_delay = 0 (stock: 1 s, which would dominate a reject test)
#   * logging: destination = null, auth logging off; no "detail"/"unix"/radutmp file
#     writes in accounting (accounting is durable in PostgreSQL only)
#   * client 127.0.0.0/8 secret testing123, require_message_authenticator = no
#     (3.2.1 has no "auto"; requests may still carry one and it is verified)
#   * listens on 127.0.0.1 only, runs as root (no user/group switch)
set -euo pipefail

USERS=${USERS:-100000}
FR_DIR=${FR_DIR:-/tmp/fr-bench}
AUTH_PORT=${AUTH_PORT:-18220}
ACCT_PORT=${ACCT_PORT:-18230}
INNER_PORT=${INNER_PORT:-18240}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGDB=${PGDB:-radius_ref}
SQL_POOL=${SQL_POOL:-16}
THREADS=${THREADS:-16}
POSTAUTH_SQL=${POSTAUTH_SQL:-0}
RESET_ACCT=${RESET_ACCT:-0}
RELOAD=${RELOAD:-0}
RECV_BUFF=${RECV_BUFF:-4194304}
SRC=/etc/freeradius/3.0

export PGHOST PGPORT PGUSER
PSQL=(psql -X -q -v ON_ERROR_STOP=1)

# 1. packages --------------------------------------------------------------------------
if ! command -v freeradius >/dev/null || [ ! -e /usr/lib/freeradius/rlm_sql_postgresql.so ] \
        || ! command -v radclient >/dev/null; then
    echo "== installing freeradius freeradius-postgresql freeradius-utils"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q freeradius freeradius-postgresql freeradius-utils
fi
# the package's init script may have started a system instance on 1812/1813; we never use it
{ freeradius -v 2>&1 || true; } | head -1

# 2. database ----------------------------------------------------------------------------
if ! "${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$PGDB'" | grep -q 1; then
    echo "== creating database $PGDB"
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $PGDB"
fi
if [ "$("${PSQL[@]}" -d "$PGDB" -tAc "SELECT to_regclass('public.radcheck') IS NOT NULL")" != t ]; then
    echo "== loading FreeRADIUS schema"
    "${PSQL[@]}" -d "$PGDB" -f "$SRC/mods-config/sql/main/postgresql/schema.sql"
fi
have=$("${PSQL[@]}" -d "$PGDB" -tAc "SELECT count(*) FROM radcheck")
if [ "$RELOAD" = 1 ] || [ "$have" != "$USERS" ]; then
    echo "== loading $USERS users into radcheck/radreply (COPY)"
    t0=$(date +%s%N)
    {
        echo "BEGIN;"
        echo "TRUNCATE radcheck, radreply RESTART IDENTITY;"
        echo "COPY radcheck (username, attribute, op, value) FROM STDIN;"
        awk -v n="$USERS" 'BEGIN { for (i = 1; i <= n; i++) printf "user%06d\tCleartext-Password\t:=\tpw%06d\n", i, i }'
        echo '\.'
        echo "COPY radreply (username, attribute, op, value) FROM STDIN;"
        # same 80/20 PPPoE/hotspot mix as seed_scale (user number % 10 in 7, 8 = hotspot)
        awk -v n="$USERS" 'BEGIN { for (i = 1; i <= n; i++) {
            hot = (i % 10 == 7 || i % 10 == 8)
            printf "user%06d\tMikrotik-Rate-Limit\t:=\t%s\n", i, hot ? "1M/2M" : "5M/10M"
            printf "user%06d\tSession-Timeout\t:=\t%d\n", i, hot ? 86400 : 2592000 } }'
        echo '\.'
        echo "COMMIT;"
        echo "ANALYZE radcheck; ANALYZE radreply;"
    } | "${PSQL[@]}" -d "$PGDB"
    echo "   loaded in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
fi
if [ "$RESET_ACCT" = 1 ]; then
    "${PSQL[@]}" -d "$PGDB" -c "TRUNCATE radacct, radpostauth RESTART IDENTITY"
fi
"${PSQL[@]}" -d "$PGDB" -tAc "SELECT 'radcheck '||(SELECT count(*) FROM radcheck)||', radreply '||(SELECT count(*) FROM radreply)||', radacct '||(SELECT count(*) FROM radacct)"

# 3. config directory ----------------------------------------------------------------------
echo "== writing $FR_DIR"
if [ -f "$FR_DIR/run/radiusd.pid" ] && kill -0 "$(cat "$FR_DIR/run/radiusd.pid")" 2>/dev/null; then
    echo "   (a bench FreeRADIUS is running from $FR_DIR; restart it to pick up changes)"
fi
mkdir -p "$FR_DIR"
rm -rf "$FR_DIR/raddb.new"
cp -a "$SRC" "$FR_DIR/raddb.new"
mkdir -p "$FR_DIR/run" "$FR_DIR/log"
R="$FR_DIR/raddb.new"

python3 - "$R" "$FR_DIR" "$AUTH_PORT" "$ACCT_PORT" "$INNER_PORT" "$THREADS" "$POSTAUTH_SQL" "$RECV_BUFF" <<'PY'
import re, sys
raddb, frdir, auth_port, acct_port, inner_port, threads, postauth_sql, recv_buff = sys.argv[1:]

def strip_blocks(text, name):
    """Remove every top-level-in-server 'name {' ... '}' block (brace matched)."""
    out, i = [], 0
    pat = re.compile(r'^[ \t]*' + re.escape(name) + r'[ \t]*\{', re.M)
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:]); break
        out.append(text[i:m.start()])
        depth, j = 0, m.end() - 1
        while True:
            c = text[j]
            if c == '{': depth += 1
            elif c == '}':
                depth -= 1
                if depth == 0: break
            elif c == '#':               # skip comments (may contain braces)
                j = text.index('\n', j) - 1
            j += 1
        i = j + 1
    return ''.join(out)

def sub(text, pattern, repl, count=1):
    new, n = re.subn(pattern, repl, text, count=count, flags=re.M)
    if n == 0:
        raise SystemExit(f"setup.sh: pattern not found: {pattern}")
    return new

p = f"{raddb}/radiusd.conf"
t = open(p).read()
t = sub(t, r'^logdir = .*$', f'logdir = {frdir}/log')
t = sub(t, r'^run_dir = .*$', f'run_dir = {frdir}/run')
t = sub(t, r'^pidfile = .*$', 'pidfile = ${run_dir}/radiusd.pid')
t = sub(t, r'^max_requests = .*$', 'max_requests = 65536')
t = sub(t, r'^(\s*)destination = files', r'\1destination = null')
t = sub(t, r'^(\s*)auth = no', r'\1auth = no')
t = sub(t, r'^(\s*)user = freerad', r'#\1user = freerad')
t = sub(t, r'^(\s*)group = freerad', r'#\1group = freerad')
t = sub(t, r'^(\s*)reject_delay = 1', r'\1reject_delay = 0')
t = sub(t, r'^(\s*)start_servers = \d+', rf'\1start_servers = {threads}')
t = sub(t, r'^(\s*)max_servers = \d+', rf'\1max_servers = {threads}')
t = sub(t, r'^(\s*)min_spare_servers = \d+', rf'\1min_spare_servers = {threads}')
t = sub(t, r'^(\s*)max_spare_servers = \d+', rf'\1max_spare_servers = {threads}')
open(p, 'w').write(t)

p = f"{raddb}/sites-available/default"
t = strip_blocks(open(p).read(), 'listen')
listen = f"""
# --- bench listeners (setup.sh) ---
listen {{
	type = auth
	ipaddr = 127.0.0.1
	port = {auth_port}
	recv_buff = {recv_buff}
}}
listen {{
	type = acct
	ipaddr = 127.0.0.1
	port = {acct_port}
	recv_buff = {recv_buff}
}}
"""
t = sub(t, r'^server default \{\n', 'server default {\n' + listen)
# accounting: durable in SQL only (no detail file, no radwtmp)
t = sub(t, r'^(accounting \{[\s\S]*?^)\tdetail$', r'\1#\tdetail (bench: off)')
t = sub(t, r'^(accounting \{[\s\S]*?^)\tunix$', r'\1#\tunix (bench: off)')
if postauth_sql != '1':
    # stock post-auth writes one radpostauth row per Access-Request; off by default here
    t = sub(t, r'^(post-auth \{[\s\S]*?^)\t-sql$', r'\1#\t-sql (bench: POSTAUTH_SQL=0)')
    t = sub(t, r'^(\tPost-Auth-Type REJECT \{[\s\S]*?)^\t\t-sql$', r'\1#\t\t-sql (bench: POSTAUTH_SQL=0)')
open(p, 'w').write(t)

p = f"{raddb}/sites-available/inner-tunnel"
t = open(p).read()
t = sub(t, r'port = 18120', f'port = {inner_port}')
open(p, 'w').write(t)
PY

cat > "$R/clients.conf" <<EOF
# bench (setup.sh): any loopback source is a NAS
client bench_loopback {
	ipaddr = 127.0.0.0/8
	secret = testing123
	shortname = bench
	nas_type = other
	require_message_authenticator = no
}
EOF

cat > "$R/mods-available/sql" <<EOF
# bench (setup.sh): rlm_sql against PostgreSQL $PGHOST:$PGPORT/$PGDB
sql {
	dialect = "postgresql"
	driver = "rlm_sql_postgresql"
	postgresql {
		send_application_name = yes
	}
	server = "$PGHOST"
	port = $PGPORT
	login = "$PGUSER"
	password = ""
	radius_db = "$PGDB"
	acct_table1 = "radacct"
	acct_table2 = "radacct"
	postauth_table = "radpostauth"
	authcheck_table = "radcheck"
	groupcheck_table = "radgroupcheck"
	authreply_table = "radreply"
	groupreply_table = "radgroupreply"
	usergroup_table = "radusergroup"
	read_groups = yes
	read_profiles = yes
	delete_stale_sessions = yes
	pool {
		start = $SQL_POOL
		min = $SQL_POOL
		max = $SQL_POOL
		spare = 0
		uses = 0
		retry_delay = 1
		lifetime = 0
		idle_timeout = 0
		max_retries = 5
	}
	read_clients = no
	client_table = "nas"
	group_attribute = "SQL-Group"
	\$INCLUDE \${modconfdir}/\${.:name}/main/\${dialect}/queries.conf
}
EOF
ln -sfn ../mods-available/sql "$R/mods-enabled/sql"

# bench settings file read by start.sh
cat > "$R/bench.env" <<EOF
AUTH_PORT=$AUTH_PORT
ACCT_PORT=$ACCT_PORT
PGDB=$PGDB
USERS=$USERS
EOF

rm -rf "$FR_DIR/raddb.old"
[ -d "$FR_DIR/raddb" ] && mv "$FR_DIR/raddb" "$FR_DIR/raddb.old"
mv "$R" "$FR_DIR/raddb"
rm -rf "$FR_DIR/raddb.old"

echo "== checking config"
freeradius -C -d "$FR_DIR/raddb" -l stdout >"$FR_DIR/log/config-check.log" 2>&1 \
    || { tail -30 "$FR_DIR/log/config-check.log"; exit 1; }
echo "ok: config $FR_DIR/raddb, auth 127.0.0.1:$AUTH_PORT, acct 127.0.0.1:$ACCT_PORT, db $PGDB"
