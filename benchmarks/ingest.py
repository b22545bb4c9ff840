"""Ingest benchmark: events per second from a file on disk to encoded sequences, and peak memory.

    python benchmarks/ingest.py [--events 5000000] [--repeat 3]

Generates (once, cached under benchmarks/.work/) a log of 5 million events — 200,000 users,
50,000 items with Zipf-like popularity, three event types, epoch-second timestamps — as CSV and as
Parquet, then measures `read_log` + `encode` on each in a fresh process (so the peak resident
memory is that of the ingestion alone), best of `--repeat` runs. Also measures the two real logs
beside the project when they are there. Writes `benchmarks/ingest.json` and
`benchmarks/ingest.md` (the table quoted in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
DATASETS = HERE.parent.parent / "shared" / "datasets"

MEASURE = r"""
import json, resource, sys, time
from seqvae.logs import read_log
from seqvae.sequences import encode
start = time.perf_counter()
log, report = read_log(sys.argv[1])
read_s = time.perf_counter() - start
sequences = encode(log, report=report)
total_s = time.perf_counter() - start
print(json.dumps({"events": sequences.n_events, "users": sequences.n_users,
                  "read_s": read_s, "total_s": total_s,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_log(n_events: int) -> tuple[Path, Path]:
    WORK.mkdir(exist_ok=True)
    csv_path = WORK / f"events_{n_events}.csv"
    parquet_path = WORK / f"events_{n_events}.parquet"
    if csv_path.exists() and parquet_path.exists():
        return csv_path, parquet_path
    rng = np.random.default_rng(0)
    n_users, n_items = max(10, n_events // 25), max(10, n_events // 100)
    users = rng.integers(0, n_users, size=n_events)
    items = np.minimum(rng.zipf(1.3, size=n_events), n_items) - 1
    items = rng.permutation(n_items)[items]
    kinds = np.array(["view", "cart", "purchase"])[
        rng.choice(3, size=n_events, p=[0.85, 0.1, 0.05])]
    ts = np.sort(rng.integers(1_700_000_000, 1_720_000_000, size=n_events))
    table = pa.table({"user_id": users, "item_id": items, "event_type": kinds, "timestamp": ts})
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def measure(path: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["total_s"])
    best["events_per_s"] = best["events"] / best["total_s"]
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    best["file_mb"] = path.stat().st_size / 1024**2
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    csv_path, parquet_path = make_log(args.events)
    cases = {f"generated CSV, {args.events / 1e6:g}M events": csv_path,
             f"generated Parquet, {args.events / 1e6:g}M events": parquet_path}
    for label, path in (("MovieLens 100K u.data (TSV)", DATASETS / "ml-100k" / "u.data"),
                        ("Amazon Beauty (one user per line)",
                         DATASETS / "amazon-beauty" / "Beauty.txt")):
        if path.exists():
            cases[label] = path
    results = {}
    for label, path in cases.items():
        results[label] = measure(path, args.repeat)
        r = results[label]
        print(f"{label}: {r['events']:,} events in {r['total_s']:.2f} s "
              f"({r['events_per_s'] / 1e6:.2f} M events/s), peak {r['peak_rss_mb']:,.0f} MB")
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d")}
    (HERE / "ingest.json").write_text(json.dumps({"machine": machine, "results": results},
                                                 indent=2) + "\n")
    lines = [
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine['date']}. Best of {args.repeat} runs, each in a fresh process; file → "
        "`read_log` → `encode`.",
        "",
        "| log | file | events | users | read s | read + encode s | events/s | peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['file_mb']:,.0f} MB | {r['events']:,} | {r['users']:,} | "
            f"{r['read_s']:.2f} | {r['total_s']:.2f} | {r['events_per_s'] / 1e6:.2f} M | "
            f"{r['peak_rss_mb']:,.0f} MB |")
    (HERE / "ingest.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
