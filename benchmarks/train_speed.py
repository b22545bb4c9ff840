"""Training-speed benchmark: throughput, time to the best validation NDCG, and peak memory.

    python benchmarks/train_speed.py [--datasets sample,beauty,ml-100k] [--epochs 30]

Each dataset is trained in a fresh process with the default `SeqVAEConfig` (early stopping on
validation NDCG@10, leave-one-out split), and measured there: wall time of every epoch, the
epoch with the best validation NDCG and the time to reach it, training events per second
(events in the training windows' real steps x epochs / training seconds), the share of padded
cells the batches leave (packed rows, or windows padded to their bucket), and the peak resident
memory of the process. Writes `benchmarks/train_speed.json` and `benchmarks/train_speed.md`.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATASETS = {
    "sample": ROOT / "sample_data" / "events.csv",
    "beauty": ROOT.parent / "shared" / "datasets" / "amazon-beauty" / "Beauty.txt",
    "ml-100k": ROOT.parent / "shared" / "datasets" / "ml-100k" / "u.data",
}

MEASURE = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from seqvae.pipeline import prepare, training_split
import numpy as np
from seqvae.batches import make_batches, pack_windows
from seqvae.training import SeqVAEConfig, fit
sequences = prepare(sys.argv[1]).sequences
split = training_split(sequences)
config = SeqVAEConfig(epochs=int(sys.argv[2]))
batches = make_batches(split.train, config)
# the cells the network runs over in one epoch: packed rows, or windows padded to their bucket
epoch = batches.epoch(np.random.default_rng(0))
if config.batching_used == "packed":
    epoch = [pack_windows(b, config.max_len) for b in epoch]
padded = sum(b["items"].size for b in epoch)
started = time.perf_counter()
recommender, history = fit(split, config, on_epoch=lambda r: print(
    f"  epoch {r.epoch}: {r.seconds:.0f} s, validation {r.validation}", file=sys.stderr,
    flush=True))
total = time.perf_counter() - started
to_best = sum(e.seconds for e in history.epochs if e.epoch <= history.best_epoch)
print(json.dumps({
    "users": sequences.n_users, "items": sequences.item_vocab.size - 2,
    "events": sequences.n_events, "train_steps": batches.n_steps,
    "padding_share": 1 - batches.n_steps / padded,
    "epochs": len(history.epochs), "best_epoch": history.best_epoch, "patience": config.patience,
    "seconds": total, "seconds_to_best": to_best,
    "first_epoch_seconds": history.epochs[0].seconds,
    "events_per_s": batches.n_steps * len(history.epochs) / sum(e.seconds for e in history.epochs),
    "validation": history.best_validation,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sample,beauty")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cap", action="append", default=[], metavar="NAME=EPOCHS",
                        help="a lower epoch limit for one dataset, e.g. beauty=6")
    args = parser.parse_args()
    caps = {k: int(v) for k, v in (c.split("=") for c in args.cap)}
    results = {}
    for name in args.datasets.split(","):
        path = DATASETS[name]
        if not path.exists():
            print(f"{name}: {path} not found, skipped")
            continue
        epochs = caps.get(name, args.epochs)
        print(f"{name}: training (at most {epochs} epochs)…", flush=True)
        out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(epochs)],
                             stdout=subprocess.PIPE, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[name]
        r["epoch_limit"] = epochs
        print(f"{name}: {r['epochs']} epochs in {r['seconds']:.0f} s, best epoch {r['best_epoch']} "
              f"after {r['seconds_to_best']:.0f} s, {r['events_per_s']:,.0f} events/s, "
              f"peak {r['peak_rss_mb']:,.0f} MB, val {r['validation']}", flush=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / "train_speed.json").write_text(json.dumps({"machine": machine, "results": results},
                                                      indent=2) + "\n")
    lines = [
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine['date']}. Default `SeqVAEConfig`, leave-one-out, early stopping on validation "
        "NDCG@10 (patience "
        f"{', '.join(sorted({str(r.get('patience', '?')) for r in results.values()}))}); one run "
        "per dataset in a fresh process.",
        "",
        "| data | users | items | training steps/epoch | padding | epochs run / limit (best) "
        "| first epoch s | to best s | total s | events/s | val NDCG@10 | peak memory |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['users']:,} | {r['items']:,} | {r['train_steps']:,} | "
            f"{r['padding_share']:.0%} | {r['epochs']} / {r.get('epoch_limit', '?')} "
            f"({r['best_epoch']}) | "
            f"{r['first_epoch_seconds']:.0f} | {r['seconds_to_best']:.0f} | {r['seconds']:.0f} | "
            f"{r['events_per_s']:,.0f} | {r['validation']['NDCG@10']:.4f} | "
            f"{r['peak_rss_mb']:,.0f} MB |")
    (HERE / "train_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
