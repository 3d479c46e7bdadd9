"""The scale run of bench/run.sh: on a seeded database of many users, measures durable track
throughput across all of them, the admin usage and offenders queries, and their query plans.
Prints JSON lines."""
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request

import serve

bin_dir, directory, users, duration, connections = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
binary = f"{bin_dir}/tally"
config = f"{directory}/tally.toml"
open(config, "w").write(
    f'[server]\nlisten = "127.0.0.1:0"\nmax_connections = 1024\n[database]\npath = "{directory}/tally.db"\n'
    + open("bench/plans.toml").read()
)
server, addr, ready_ms = serve.start(binary, config)


def timed(path, runs=5):
    times = []
    for _ in range(runs):
        start = time.monotonic()
        body = urllib.request.urlopen(f"http://{addr}{path}").read()
        times.append((time.monotonic() - start) * 1000)
    return sorted(times)[runs // 2], json.loads(body)


usage_ms, usage = timed("/v1/admin/usage?top=10")
offenders_ms, _ = timed("/v1/admin/offenders?limit=10")
print(json.dumps({"label": f"scale-queries-{users}", "users": usage["users_total"], "start_to_ready_ms": round(ready_ms, 1),
                  "admin_usage_ms": round(usage_ms, 2), "offenders_ms": round(offenders_ms, 2)}))
track = subprocess.run([f"{bin_dir}/loadgen", "--label", f"scale-track-{users}", "--target", "http", "--op", "track",
                        "--addr", addr, "--connections", connections, "--duration", duration, "--users", str(users)],
                       capture_output=True, text=True, check=True)
print(track.stdout.strip())
serve.stop(server)

db = sqlite3.connect(f"{directory}/tally.db")
period = usage["period"]
plans = {
    "totals": db.execute("EXPLAIN QUERY PLAN SELECT metric, total FROM period_totals WHERE period = ?", (period,)).fetchall(),
    "top_users": db.execute(
        "EXPLAIN QUERY PLAN SELECT u.id, c.value FROM usage_counters c JOIN users u ON u.id = c.user_pk "
        "WHERE c.period = ? AND c.metric = ? ORDER BY c.value DESC, c.user_pk DESC LIMIT 10", (period, "prompts")).fetchall(),
}
print(json.dumps({"label": f"scale-plans-{users}", "plans": {name: [row[-1] for row in rows] for name, rows in plans.items()}}))
