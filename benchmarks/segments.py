"""Does the map show taste? k-means on the users' μ against the sample log's planted segments.

    python benchmarks/segments.py [--seeds 0,1,2]
    python benchmarks/segments.py --config '{"variational": false}' --name segments-twin
    python benchmarks/segments.py --sample-seed 11 --name segments-sample-11

The bundled sample (`sample_data/`) is generated with six planted user segments that the model
never sees. For each seed, the default `SeqVAEConfig` is trained as the dashboard trains it
(leave-one-out, the dashboard's epoch limit, early stopping), every user is encoded in both of
the Latent page's views (`SeqVAERecommender.encode`: "taste", every event of the user's last
window combined, the page's default; "next", μ after their last event), and the users are
clustered two ways: k-means with 6 clusters on μ, and the Latent page's own `cluster_users`.
The adjusted Rand index against the planted segments is 0 for a random labelling and 1 for the
segments exactly. An untrained network of the same seed is the floor. Writes
`benchmarks/segments.json` and `benchmarks/segments.md`; `--config` changes `SeqVAEConfig`
fields (the twin: `{"variational": false}`), and `--sample-seed S` generates another log of the
same size and kind with seed S (the bundled one is seed 7) — a log no choice was made on; both
need a `--name` of their own, so the default's tables are never overwritten.
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
    parser.add_argument("--sample-seed", type=int, default=None,
                        help="generate another sample log with this seed (the bundled: 7)")
    parser.add_argument("--name", default="segments",
                        help="the output files' name (needed with --config or --sample-seed)")
    args = parser.parse_args()
    changes = json.loads(args.config)
    if (changes or args.sample_seed is not None) and args.name == "segments":
        parser.error("--config and --sample-seed need a --name of their own (e.g. "
                     "segments-twin), so the default's segments.json/.md are not overwritten")

    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from seqvae.latent import cluster_users
    from seqvae.pipeline import prepare, train
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import SeqVAEConfig, build_model
    from seqvae.ui.state import DASHBOARD_EPOCHS

    if args.sample_seed is None:
        sequences = prepare(ROOT / "sample_data" / "events.csv").sequences
        segments = pd.read_csv(ROOT / "sample_data" / "segments.csv",
                               dtype=str).set_index("user_id")
    else:
        import io

        from seqvae.sample import generate

        sample = generate(n_users=2000, n_items=1000, seed=args.sample_seed)
        # read from its CSV text, as the bundled sample's file is read
        sequences = prepare(io.BytesIO(sample.events.to_csv(index=False).encode()),
                            name="events.csv").sequences
        segments = sample.segments.astype(str).set_index("user_id")
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
        # the floor: the same network (the twin's, with --config) before any training
        used = trained.recommender.config_
        untrained = build_model(used, sequences)
        untrained.build_for_inputs()
        floor = SeqVAERecommender(untrained, used, sequences.item_vocab,
                                  sequences.event_vocab, sequences)
        views = trained.recommender.encode_views(trained.recommender.last_windows(sequences))
        floor_views = floor.encode_views(floor.last_windows(sequences))
        row = {"seed": seed, "epochs": len(trained.history.epochs),
               "best_epoch": trained.history.best_epoch, "seconds": round(seconds, 1),
               "validation": trained.history.best_validation,
               "trained": scores(views["next"][0]), "taste": scores(views["taste"][0]),
               "untrained": scores(floor_views["next"][0]),
               "untrained_taste": scores(floor_views["taste"][0])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / f"{args.name}.json").write_text(json.dumps(
        {"machine": machine, "config": changes, "sample_seed": args.sample_seed, "runs": rows},
        indent=2) + "\n")
    which = (f"`SeqVAEConfig` with {json.dumps(changes)}" if changes
             else "the default `SeqVAEConfig`")
    log = ("The bundled sample log" if args.sample_seed is None
           else f"A sample log generated with seed {args.sample_seed}")
    lines = [f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python "
             f"{machine['python']}, {machine['date']}. {log} (2,000 users, six planted "
             f"segments), {which} with the dashboard's epoch limit "
             f"({DASHBOARD_EPOCHS}); adjusted Rand index of six clusters of μ against the "
             "segments, in both views of the Latent page: taste (every event of a user's last "
             "window combined, the page's default) and next (μ after their last event).", "",
             "| seed | epochs (best) | train + test s | validation NDCG@10 | ARI taste, k-means "
             "| ARI taste, page clusters | ARI next, k-means | ARI next, page clusters "
             "| ARI untrained, taste / next |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['epochs']} ({row['best_epoch']}) | "
                     f"{row['seconds']:.0f} | {row['validation']['NDCG@10']:.4f} | "
                     f"{row['taste']['kmeans']:.3f} | {row['taste']['page']:.3f} | "
                     f"{row['trained']['kmeans']:.3f} | {row['trained']['page']:.3f} | "
                     f"{row['untrained_taste']['kmeans']:.3f} / "
                     f"{row['untrained']['kmeans']:.3f} |")
    taste = sum(r["taste"]["kmeans"] for r in rows) / len(rows)
    mean = sum(r["trained"]["kmeans"] for r in rows) / len(rows)
    lines += ["", f"Mean ARI (k-means on μ): taste {taste:.3f}, next {mean:.3f}."]
    (HERE / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
