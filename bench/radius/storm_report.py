"""Print the reconnect-storm line of bench/freeradius/loadgen.py --storm --json (stdin)."""

import json
import sys

for line in sys.stdin:
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    accepted = d["codes"].get("Access-Accept", 0)
    print(f"storm {d['kind']}: {d['answered']} of {d['sent']} users answered in {d['seconds']:.2f} s "
          f"({d['answered_per_s']:.0f}/s), lost {d['lost']}, retransmits {d['retransmits']}, accepted {accepted}, "
          f"p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms; codes {d['codes']}")
