#!/usr/bin/env bash
# Reconnect storm (issue 3): 100,000 distinct users each authenticate once, as fast as the
# server answers (window of outstanding requests, NAS-like retransmits after 3 s, at most 2),
# against any server; prints the time to serve all of them and how many were lost.
#   bench/radius/storm.sh 127.0.0.1:18120            # our radiusd (see README.md)
#   KIND=mschapv2 WINDOW=1024 USERS=100000 bench/radius/storm.sh 127.0.0.1:18220   # FreeRADIUS
# Every user is distinct and sent once, so the duplicate cache never answers; run it on a
# server whose accounting tables hold no open sessions (else simultaneous-use rejects count
# as answered but not as accepted: see "codes" in the output).
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${1:-127.0.0.1:18120}
PY=${PY:-.venv/bin/python}
taskset -c "${LG_CPU:-1}" timeout 600 "$PY" bench/freeradius/loadgen.py --target "$TARGET" \
    --kind "${KIND:-pap}" --storm --users "${USERS:-100000}" --window "${WINDOW:-1024}" \
    --timeout 3 --retries 2 --json 2>/dev/null | "$PY" bench/radius/storm_report.py
