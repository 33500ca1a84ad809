"""Print a Markdown table from the JSON lines written by measure.sh.

    python3 bench/freeradius/summarize.py /tmp/fr-bench/results.jsonl [more.jsonl ...]

'server CPU' and 'PG CPU' are CPU-seconds used during the test by the server
process (all threads) and by the PostgreSQL backends connected to its database,
shown as microseconds per answered request (acct: Starts + Interims together).
"""

import json
import sys

print("| file | test | answered/s | p50 ms | p99 ms | answered | lost | retransmits | replies "
      "| server CPU us/req | PG CPU us/req | loadavg |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    fname = path.rsplit("/", 1)[-1]
    rows, group, note = [], [], {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("note") == "cpu":
            n = sum(r["answered"] for r in group) or 1
            for r in group:
                r["srv"] = f"{d['server_cpu_s'] * 1e6 / n:.0f}"
                r["pg"] = f"{d['postgres_cpu_s'] * 1e6 / n:.0f}"
            continue
        if "note" in d:
            if "VmRSS" in d:
                rows.append({"text": f"| {fname} | server RSS after the run | {d['VmRSS']} (peak {d['VmHWM']}) "
                                     "| | | | | | | | | |"})
            note, group = d, []
            continue
        name = note.get("note", d["label"])
        if d["label"] == "acct-start":
            name = "acct-start (open the sessions)"
        rate = f"{d['answered_per_s']:.0f}" + (f" (offered {d['rate_offered']:.0f})" if d["rate_offered"] else "")
        p99 = f"{d['p99_ms']}" + (f" (from schedule {d.get('sched_p99_ms')})" if d["rate_offered"] else "")
        extra = f" in {d['seconds']:.1f} s" if d["label"] == "storm" else ""
        codes = ", ".join(f"{k} {v}" for k, v in d["codes"].items())
        d.update(name=name, rate=rate, p99s=p99, extra=extra, codestr=codes, la=note.get("loadavg", ""))
        rows.append(d)
        group.append(d)
    for r in rows:
        if "text" in r:
            print(r["text"])
            continue
        print(f"| {fname} | {r['name']} | {r['rate']} | {r['p50_ms']} | {r['p99s']} | {r['answered']}{r['extra']} "
              f"| {r['lost']} | {r['retransmits']} | {r['codestr']} | {r.get('srv', '')} | {r.get('pg', '')} | {r['la']} |")
