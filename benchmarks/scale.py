"""Scale benchmark: a generated log of 20 million events through the out-of-core path.

    python benchmarks/scale.py [--events 20000000] [--users 500000] [--items 10000]
                               [--steps 100] [--keep]

1. **generate** a CSV log (users interleaved in time order, as an append-only export is);
2. **ingest** it with `seqvae ingest` into a sequence store: rows/s and peak memory;
3. **train** from the store for `--steps` batches (`--steps-per-epoch`, one epoch): one process,
   then two worker processes on 127.0.0.1 (`--strategy multi-worker`, TF_CONFIG) with the same
   global batch: training events/s (predicted steps per second of the training loop) and the
   peak memory of each process;
4. **score** every user with `seqvae recommend MODEL --all --out recs.parquet`: users/s.

Every command runs in a fresh process, which reports its own peak resident memory (`VmHWM`; the
`ru_maxrss` of a child also counts the parent it was forked from). Writes
`benchmarks/scale.json` and `benchmarks/scale.md`. The data are written to a temporary folder
(about 1 GB for 20 million events) and removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from seqvae.training import local_cluster

HERE = Path(__file__).resolve().parent
# `seqvae` in a process that prints its peak resident memory (kB) on stderr at exit
SEQVAE = [sys.executable, "-c", """
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_KB " + line.split()[1] + "\\n")
atexit.register(peak)
from seqvae.cli import main
sys.exit(main(sys.argv[1:]))
"""]


def generate(path: Path, n_events: int, n_users: int, n_items: int, seed: int = 0) -> None:
    """Users with ~n_events/n_users events each, a taste (an item neighbourhood) per user,
    Zipf-like item popularity, views/carts/purchases, times over 180 days."""
    rng = np.random.default_rng(seed)
    lengths = 2 + rng.poisson(max(n_events / n_users - 2, 0), n_users)
    users = np.repeat(np.arange(n_users), lengths)[:n_events]  # at most n_events
    lengths = np.bincount(users, minlength=n_users)
    lengths = lengths[lengths > 0]
    taste = rng.integers(0, n_items, n_users)
    offset = np.minimum(rng.zipf(1.6, users.size), n_items) * rng.choice([-1, 1], users.size)
    popular = rng.zipf(1.3, users.size) % n_items
    items = np.where(rng.random(users.size) < 0.7, (taste[users] + offset) % n_items, popular)
    start = 1_700_000_000 + rng.integers(0, 150 * 86400, lengths.size)
    gaps = rng.exponential(3600.0, users.size).astype(np.int64)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], lengths)[:users.size]
    times = start[users] + within
    order = np.argsort(times, kind="stable")
    events = np.array(["view", "cart", "purchase"])[
        rng.choice(3, users.size, p=[0.8, 0.15, 0.05])]
    table = pa.table({"user_id": users[order], "item_id": items[order],
                      "event_type": events[order], "timestamp": times[order]})
    pacsv.write_csv(table, path)


def measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `command`, return its JSON output plus wall seconds and peak memory (MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return finish(process, started)


def finish(process: subprocess.Popen, started: float) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{process.args[-1]} failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    peaks = [int(line.split()[1]) for line in err.decode().splitlines()
             if line.startswith("PEAK_KB ")]
    result["peak_mb"] = peaks[-1] / 1024
    return result


def training_rate(model: Path) -> dict:
    epoch = json.loads((model / "history.json").read_text())["epochs"][0]
    return {"batches": epoch["batches"], "events": epoch["events"],
            "train_s": epoch["train_seconds"],
            "events_per_s": epoch["events"] / epoch["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--stages", default="train1,train2,score",
                        help="which of train1, train2, score to run after the ingest (the "
                        "others keep their results from benchmarks/scale.json)")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    work = Path(tempfile.mkdtemp(prefix="seqvae-scale-"))
    previous = HERE / "scale.json"
    results: dict = json.loads(previous.read_text()) if previous.exists() else {}
    results["settings"] = vars(args)
    try:
        log = work / "events.csv"
        print(f"generating {args.events:,} events in {log} …", flush=True)
        started = time.perf_counter()
        generate(log, args.events, args.users, args.items)
        results["log"] = {"bytes": log.stat().st_size, "generate_s": time.perf_counter() - started}

        print("ingest …", flush=True)
        ingest = measure([*SEQVAE, "ingest", str(log), "--out", str(work / "store"), "--json"])
        ingest["rows_per_s"] = ingest["rows_read"] / ingest["wall_s"]
        results["ingest"] = ingest
        print(f"  {ingest['rows_per_s']:,.0f} rows/s, peak {ingest['peak_mb']:,.0f} MB", flush=True)
        # the same users and items, a quarter of the events: memory should not follow the size
        small = work / "quarter.csv"
        generate(small, args.events // 4, args.users, args.items)
        quarter = measure([*SEQVAE, "ingest", str(small), "--out", str(work / "store-q"), "--json"])
        quarter["rows_per_s"] = quarter["rows_read"] / quarter["wall_s"]
        results["ingest_quarter"] = quarter
        shutil.rmtree(work / "store-q")
        small.unlink()

        train = [*SEQVAE, "train", str(work / "store"), "--epochs", "1", "--steps-per-epoch",
                 str(args.steps), "--batch-size", str(args.batch_size), "--eval-users", "2000",
                 "--block-events", "1000000", "--json", "--quiet"]
        if stages & {"train1", "score"}:
            print("train, one process …", flush=True)
            one = measure([*train, "--out", str(work / "model-1")])
            one.update(training_rate(work / "model-1"))
            results["train_1"] = one
            print(f"  {one['events_per_s']:,.0f} events/s, peak {one['peak_mb']:,.0f} MB",
                  flush=True)

        if "train2" in stages:
            # each worker gets half of the cores (TensorFlow sizes its thread pool to all of
            # them otherwise, and two workers on one machine would fight over them)
            threads = str(max(1, (os.cpu_count() or 2) // 2))
            print(f"train, two local workers ({threads} thread(s) each) …", flush=True)
            started = time.perf_counter()
            processes = [subprocess.Popen(
                [*train, "--out", str(work / "model-2"), "--strategy", "multi-worker"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config,
                     "TF_NUM_INTRAOP_THREADS": threads})
                for tf_config in local_cluster(2)]
            two = [finish(p, started) for p in processes]
            rate = training_rate(work / "model-2")
            results["train_2"] = {**two[0], **rate, "threads_per_worker": int(threads),
                                  "peak_mb_per_worker": [w["peak_mb"] for w in two]}
            print(f"  {rate['events_per_s']:,.0f} events/s, peak per worker "
                  f"{[round(w['peak_mb']) for w in two]} MB", flush=True)

        if "score" in stages:
            print("batch scoring …", flush=True)
            score = measure([*SEQVAE, "recommend", str(work / "model-1"), "--all", "--out",
                             str(work / "recs.parquet"), "--json"])
            score["users_per_s"] = score["users"] / score["seconds"]
            results["score"] = score
            print(f"  {score['users_per_s']:,.0f} users/s, peak {score['peak_mb']:,.0f} MB",
                  flush=True)
    finally:
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    write_table(results)


def write_table(r: dict) -> None:
    m, i, one, two, s = r["machine"], r["ingest"], r["train_1"], r["train_2"], r["score"]
    q = r["ingest_quarter"]
    lines = [
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, {m['date']}. "
        f"Generated log: {i['rows_read']:,} events, {i['users']:,} users, {i['items']:,} items, "
        f"CSV of {r['log']['bytes'] / 1e6:,.0f} MB. Each command in a fresh process; memory is "
        "its peak resident set (`VmHWM`, pages of the memory-mapped files it had mapped "
        "included).",
        "",
        "| stage | result | wall s | peak memory |",
        "|---|---:|---:|---:|",
        f"| ingest (`seqvae ingest`, CSV → store) | {i['rows_per_s']:,.0f} events/s "
        f"| {i['wall_s']:.1f} | {i['peak_mb']:,.0f} MB |",
        f"| ingest, a quarter of the events (same users and items) "
        f"| {q['rows_per_s']:,.0f} events/s | {q['wall_s']:.1f} | {q['peak_mb']:,.0f} MB |",
        f"| train, 1 process ({one['batches']} batches of {r['settings']['batch_size']}) "
        f"| {one['events_per_s']:,.0f} events/s | {one['train_s']:.1f} | {one['peak_mb']:,.0f} MB |",
        f"| train, 2 local workers, {two.get('threads_per_worker', '?')} thread(s) each "
        f"(same global batch) | {two['events_per_s']:,.0f} events/s "
        f"| {two['train_s']:.1f} | {' + '.join(f'{p:,.0f}' for p in two['peak_mb_per_worker'])} MB |",
        f"| batch scoring (`recommend --all`, top 10) | {s['users_per_s']:,.0f} users/s "
        f"| {s['seconds']:.1f} | {s['peak_mb']:,.0f} MB |",
        "",
        f"Training: 2 workers / 1 process = {two['events_per_s'] / one['events_per_s']:.2f}×.",
    ]
    (HERE / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
