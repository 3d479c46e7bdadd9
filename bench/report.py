"""Prints bench/run.sh's results as one table, the ratios the targets are stated in, and the
correctness check (stored counters against 200 answers)."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
by_label = {row["label"]: row for row in rows}


def rss(row):
    return f"{row['peak_rss_kib'] / 1024:.1f} MiB" if "peak_rss_kib" in row else ""


print(f"{'run':<24}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'errors':>8}  peak RSS")
for row in rows:
    if "throughput" not in row:
        continue
    rate = f" @{row['rate']:.0f}/s" if row.get("rate") else ""
    print(
        f"{row['label'] + rate:<24}{row['connections']:>6}{row['throughput']:>10.0f}{row['p50_ms']:>9.2f}"
        f"{row['p99_ms']:>9.2f}{row['p999_ms']:>10.2f}{row['errors'] + row['failed']:>8}  {rss(row)}"
    )


def ratio(a, b):
    if a in by_label and b in by_label:
        print(f"{a} / {b}: {by_label[a]['throughput'] / by_label[b]['throughput']:.2f}x")


print()
ratio("track-full", "ceiling")
ratio("ceiling", "ceiling-oxhttp")
ratio("track-full", "redis-always")
ratio("track-full", "postgres-sync-on")
ratio("track-normal", "track-full")
# The full database also took the mixed run's tracks.
for label, also in (("track-full", ["mixed"]), ("track-normal", [])):
    row = by_label.get(label)
    if row and "stored_sum" in row:
        answered = row["tracked_ok"] + sum(by_label[other]["tracked_ok"] for other in also if other in by_label)
        verdict = "ok" if row["stored_sum"] == answered else "MISMATCH"
        print(f"correctness {label}: {answered} track answers of 200, {row['stored_sum']} stored: {verdict}")
binary = by_label.get("binary")
if binary:
    print(f"stripped binary: {binary['stripped_bytes'] / 1e6:.1f} MB; start to ready: {binary['start_to_ready_ms']} ms")
