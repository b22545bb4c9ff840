"""Does the map show taste? k-means on the users' μ against the sample log's planted segments.

    python benchmarks/segments.py [--seeds 0,1,2]
    python benchmarks/segments.py --config '{"variational": false}' --name segments-twin

The bundled sample (`sample_data/`) is generated with six planted user segments that the model
never sees. For each seed, the default `SeqVAEConfig` is trained as the dashboard trains it
(leave-one-out, the dashboard's epoch limit, early stopping), every user is encoded (μ after
their last event), and the users are clustered two ways: k-means with 6 clusters on μ, and the
Latent page's own `cluster_users`. The adjusted Rand index against the planted segments is 0 for
a random labelling and 1 for the segments exactly. An untrained network of the same seed is the
floor. Writes `benchmarks/segments.json` and `benchmarks/segments.md`; `--config` changes
`SeqVAEConfig` fields (the twin: `{"variational": false}`) and then needs a `--name` of its own,
so the default's tables are never overwritten by another model's.
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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--config", default="{}", metavar="JSON",
                        help="SeqVAEConfig fields to change, e.g. '{\"variational\": false}'")
    parser.add_argument("--name", default="segments",
                        help="the output files' name (needed with --config)")
    args = parser.parse_args()
    changes = json.loads(args.config)
    if changes and args.name == "segments":
        parser.error("--config needs a --name of its own (e.g. segments-twin), so the "
                     "default's segments.json/.md are not overwritten")

    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from seqvae.latent import cluster_users
    from seqvae.model import SeqVAE
    from seqvae.pipeline import prepare, train
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import SeqVAEConfig
    from seqvae.ui.state import DASHBOARD_EPOCHS

    sequences = prepare(ROOT / "sample_data" / "events.csv").sequences
    segments = pd.read_csv(ROOT / "sample_data" / "segments.csv", dtype=str).set_index("user_id")
    truth = segments.loc[list(sequences.users), "segment"].to_numpy()

    def scores(mean: np.ndarray) -> dict[str, float]:
        kmeans = KMeans(6, n_init=10, random_state=0).fit_predict(mean)
        return {"kmeans": adjusted_rand_score(truth, kmeans),
                "page": adjusted_rand_score(truth, cluster_users(mean, k=6))}

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = replace(SeqVAEConfig(**changes), epochs=DASHBOARD_EPOCHS, seed=seed)
        started = time.perf_counter()
        trained = train(sequences, config)
        seconds = time.perf_counter() - started
        untrained = SeqVAE(sequences.item_vocab.size, sequences.event_vocab.size,
                           sequences.options.time_buckets, seed=seed)
        untrained.build_for_inputs()
        floor = SeqVAERecommender(untrained, config, sequences.item_vocab,
                                  sequences.event_vocab, sequences)
        row = {"seed": seed, "epochs": len(trained.history.epochs),
               "best_epoch": trained.history.best_epoch, "seconds": round(seconds, 1),
               "validation": trained.history.best_validation,
               "trained": scores(trained.recommender.encode(sequences)[0]),
               "untrained": scores(floor.encode(sequences)[0])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / f"{args.name}.json").write_text(json.dumps(
        {"machine": machine, "config": changes, "runs": rows}, indent=2) + "\n")
    which = (f"`SeqVAEConfig` with {json.dumps(changes)}" if changes
             else "the default `SeqVAEConfig`")
    lines = [f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python "
             f"{machine['python']}, {machine['date']}. The sample log (2,000 users, six planted "
             f"segments), {which} with the dashboard's epoch limit "
             f"({DASHBOARD_EPOCHS}); adjusted Rand index of six clusters of μ against the "
             "segments.", "",
             "| seed | epochs (best) | train + test s | validation NDCG@10 | ARI, k-means on μ | "
             "ARI, Latent page clusters | ARI, untrained network |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['epochs']} ({row['best_epoch']}) | "
                     f"{row['seconds']:.0f} | {row['validation']['NDCG@10']:.4f} | "
                     f"{row['trained']['kmeans']:.3f} | {row['trained']['page']:.3f} | "
                     f"{row['untrained']['kmeans']:.3f} |")
    mean = sum(r["trained"]["kmeans"] for r in rows) / len(rows)
    lines += ["", f"Mean ARI (k-means on μ): {mean:.3f}."]
    (HERE / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
