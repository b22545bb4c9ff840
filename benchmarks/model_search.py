"""The search behind the SeqVAE's defaults: train one setting, record validation scores only.

    python benchmarks/model_search.py beauty-p1 '{"encoder": "attention", "batch_size": 256}'
    python benchmarks/model_search.py beauty-slice '{...}' --note "why this run"

Settings: ``beauty-p1``, ``ml100k-p1``, ``ml100k-p2`` (as in `quality.py`), ``beauty-slice``
(the first 4,000 users of Beauty, for quick directions) and ``sample`` (the bundled generated
log). The split is the quality benchmark's (seed 0); the test part is never scored here.
``beauty-ahead`` and ``ml100k-ahead`` ask how a setting does one step past its validation, as the
test asks it: each user's last event (the quality benchmark's test item) is removed before the
split, so the model trains on all but the last three events, picks its epoch on the third to
last, and is then scored ("ahead") on the second to last — the quality benchmark's *validation*
item — from a history whose last event it never trained on, exactly as the test item is
predicted after the validation item.
``--without gaps`` / ``--without events`` (or both, comma-separated) measure what the log's
times and event types buy: every event gets the "no previous event" gap bucket, or one event
type, before the split, so the network sees the items alone.
Every run appends one line to `benchmarks/model_search.jsonl`: the setting, every
`SeqVAEConfig` field, each epoch's validation NDCG/HR at the selection K and its seconds, the
best epoch and the time to reach it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SETTINGS = {
    "beauty-p1": (DATA / "amazon-beauty" / "Beauty.txt", None, 20),
    "beauty-ahead": (DATA / "amazon-beauty" / "Beauty.txt", None, 20),
    "ml100k-ahead": (DATA / "ml-100k" / "u.data", None, 20),
    "beauty-slice": (DATA / "amazon-beauty" / "Beauty.txt", 4000, 20),
    "ml100k-p1": (DATA / "ml-100k" / "u.data", None, 20),
    "ml100k-p2": (DATA / "ml-100k" / "u.data", None, 100),
    "sample": (ROOT / "sample_data" / "events.csv", None, 10),
}


def without(sequences, inputs: set[str]):
    """`sequences` with the named side inputs blanked: ``gaps`` -> every event the first-event
    bucket, ``events`` -> every event the first event type (id 2)."""
    from dataclasses import replace as replace_fields

    import numpy as np

    from seqvae.sequences import GAP_FIRST

    unknown = inputs - {"gaps", "events"}
    if unknown:
        raise SystemExit(f"--without takes gaps and/or events, not {sorted(unknown)}")
    changes = {}
    if "gaps" in inputs:
        changes["gaps"] = np.full_like(sequences.gaps, GAP_FIRST)
    if "events" in inputs:
        changes["events"] = np.full_like(sequences.events, 2)
    return replace_fields(sequences, **changes)


def load_split(setting: str, blank: set[str] = frozenset()):
    import numpy as np

    from seqvae.compare import make_split
    from seqvae.pipeline import prepare

    path, users, _ = SETTINGS[setting]
    if setting == "ml100k-p2":  # as in quality.py: ratings >= 4, held-out users, 80/20 fold-in
        sequences = without(prepare(path, min_rating=4.0).sequences, blank)
        return make_split(sequences, "holdout-users", seed=0, min_length=5)
    sequences = without(prepare(path).sequences, blank)
    if setting.endswith("-ahead"):  # every user's last event (the benchmark's test item) dropped
        last = sequences.offsets[1:] - 1
        keep = np.ones(sequences.n_events, dtype=bool)
        keep[last[sequences.lengths > 0]] = False
        sequences = sequences.select(keep)
    if users is not None:
        sequences = sequences.subset_users(range(users))
    return make_split(sequences, "leave-one-out", seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", choices=sorted(SETTINGS))
    parser.add_argument("config", nargs="?", default="{}", help="SeqVAEConfig fields as JSON")
    parser.add_argument("--note", default="")
    parser.add_argument("--without", default="", help="gaps and/or events, comma-separated")
    args = parser.parse_args()
    blank = {name for name in args.without.split(",") if name}
    from seqvae.training import SeqVAEConfig, fit

    k = SETTINGS[args.setting][2]
    config = replace(SeqVAEConfig(), eval_k=k, **json.loads(args.config))
    split = load_split(args.setting, blank)
    started = time.perf_counter()
    epochs: list[dict] = []

    def on_epoch(record) -> None:
        epochs.append({"epoch": record.epoch, "seconds": round(time.perf_counter() - started, 1),
                       "train_seconds": round(record.train_seconds, 1),
                       "loss": round(record.loss, 4), "kl": round(record.kl_loss, 3),
                       **{m: round(v, 5) for m, v in record.validation.items()}})
        print(json.dumps(epochs[-1]), flush=True)

    fitted, history = fit(split, config, on_epoch=on_epoch)
    best = history.best_epoch
    ahead = None
    if args.setting.endswith("-ahead"):
        from seqvae.evaluation import evaluate

        metrics = evaluate(fitted, split.test, [k], with_auc=False).metrics
        ahead = {m: v for m, v in metrics.items() if m in (f"NDCG@{k}", f"HR@{k}")}
        print(f"ahead (the benchmark's validation item, one step past): {ahead}")
    line = {"setting": args.setting, "note": args.note, "without": sorted(blank),
            "config": config.to_dict(),
            "best_epoch": best, "best": history.best_validation,
            **({"ahead": ahead} if ahead is not None else {}),
            "seconds_to_best": next(e["seconds"] for e in epochs if e["epoch"] == best),
            "seconds": round(history.seconds, 1), "epochs": epochs,
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
            "date": time.strftime("%Y-%m-%d")}
    with (HERE / "model_search.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"best epoch {best}: {history.best_validation} "
          f"({line['seconds_to_best']:.0f} s to best, {line['seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
