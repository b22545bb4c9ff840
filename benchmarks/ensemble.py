"""Two (or more) networks averaged against each alone: validation and, once, test.

    python benchmarks/ensemble.py beauty-p1 --seed 0 --members 2

Trains `SeqVAEConfig(members=N, seed=S)` on the setting's split (as `model_search.py` reads it:
the quality benchmark's split, seed 0) with `seqvae.training.fit` — on a machine with a core for
each network, one process per network — then scores the ensemble and each of its networks alone
on validation and on test (test once per row), and appends one line to
`benchmarks/ensemble.jsonl`. The settings' defaults are the product's, `members` aside.
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
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", choices=["beauty-p1", "ml100k-p1", "sample"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--config", default="{}", help="other SeqVAEConfig fields as JSON")
    args = parser.parse_args()

    import numpy as np
    from model_search import SETTINGS, load_split

    from seqvae.evaluation import evaluate
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import SeqVAEConfig, fit

    k = SETTINGS[args.setting][2]
    config = replace(SeqVAEConfig(), eval_k=k, seed=args.seed, members=args.members,
                     **json.loads(args.config))
    split = load_split(args.setting)
    started = time.perf_counter()
    ensemble, history = fit(split, config)
    seconds = time.perf_counter() - started
    popularity = np.bincount(split.train.items, minlength=split.train.item_vocab.size)
    alone = [SeqVAERecommender(net, replace(ensemble.config_, members=1),
                               ensemble.item_vocab_, ensemble.event_vocab_, ensemble.history_)
             for net in ensemble.networks()]
    scores = {}
    for name, recommender in (("ensemble", ensemble),
                              *((f"network {i + 1}", r) for i, r in enumerate(alone))):
        validation = evaluate(recommender, split.validation, [k], with_auc=False).metrics
        began = time.perf_counter()
        test = evaluate(recommender, split.test, sorted({10, k}), popularity=popularity).metrics
        scores[name] = {
            "validation": {m: round(validation[m], 5) for m in (f"NDCG@{k}", f"HR@{k}")},
            "test": {m: round(v, 5) for m, v in test.items()
                     if m.split("@")[0] in ("NDCG", "HR", "Coverage")},
            "eval_seconds": round(time.perf_counter() - began, 1)}
        print(name, json.dumps(scores[name]), flush=True)
    best = [history.best_epoch] + [member["best_epoch"] for member in history.members]
    line = {"setting": args.setting, "config": config.to_dict(), "best_epochs": best,
            "seconds": round(seconds, 1), "scores": scores,
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
            "date": time.strftime("%Y-%m-%d")}
    with (HERE / "ensemble.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
