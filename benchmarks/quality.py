"""Quality benchmark: the SeqVAE against the baselines on real logs, under published protocols.

    python benchmarks/quality.py [--settings beauty-p1,ml100k-p1,ml100k-p2,beauty-p2]
                                 [--models seqvae,sasrec] [--cap beauty-p1=12]

Settings (see ../shared/datasets/README.md):

* ``beauty-p1`` — Amazon Beauty, P1 next-item leave-one-out, full ranking; K = 5, 10, 20;
  choices on validation NDCG@20.
* ``ml100k-p1`` — MovieLens 100K by timestamp, P1; K = 10, 20; choices on validation NDCG@20.
* ``ml100k-p2`` — MovieLens 100K, ratings >= 4 as positives, users with >= 5 positives, P2 held-out
  users (10% validation, 10% test, seed 0) with a temporal 80/20 fold-in; K = 20, 50, 100;
  choices on validation NDCG@100.
* ``beauty-p2`` — Amazon Beauty under the same P2 protocol (every event a positive): 2,236
  held-out validation and 2,236 test users the networks never train on, each user's last 20% of
  events (at least one) the targets of the first 80%; K = 20, 50, 100; choices on validation
  NDCG@100. It asks on thousands of users what ML-100K P2's 94 test users can only hint at: how
  the models rank for users who arrive after training (the fold-in of `seqvae recommend --log`).

Each (setting, model) runs `seqvae.compare.compare` in a fresh process (the same seeded split in
each), so the peak memory is that model's. Every hyperparameter — EASE's λ, item-KNN's
neighbours, the neural models' epochs — is chosen on validation; the test split is evaluated once
per model. `--cap SETTING=N` lowers the SeqVAE's epoch limit for one setting (said in the
results). Writes `benchmarks/quality.json` and `benchmarks/quality.md`. Each model's per-user
test values are kept under `benchmarks/.work/per-user/` (not committed); once the SeqVAE and
another model of a setting both have them, the SeqVAE's lead over that model on the same users —
the mean difference of the selection metric with a paired bootstrap interval — is written beside
the table (`paired` in the JSON). `--split-seed S` (S > 0) draws the split with another seed, to
ask whether a comparison holds on other held-out users or other validation items; it writes
`benchmarks/quality-split-S.json` and `.md` instead, so the committed seed-0 tables are never
overwritten by it.
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
DATA = ROOT.parent / "shared" / "datasets"
SETTINGS = {
    "beauty-p1": {"path": DATA / "amazon-beauty" / "Beauty.txt", "protocol": "leave-one-out",
                  "ks": [5, 10, 20], "min_rating": None, "min_length": None},
    "ml100k-p1": {"path": DATA / "ml-100k" / "u.data", "protocol": "leave-one-out",
                  "ks": [10, 20], "min_rating": None, "min_length": None},
    "ml100k-p2": {"path": DATA / "ml-100k" / "u.data", "protocol": "holdout-users",
                  "ks": [20, 50, 100], "min_rating": 4.0, "min_length": 5},
    "beauty-p2": {"path": DATA / "amazon-beauty" / "Beauty.txt", "protocol": "holdout-users",
                  "ks": [20, 50, 100], "min_rating": None, "min_length": 5},
}
MODELS = ["pop", "itemknn", "ease", "multvae", "sasrec", "seqvae"]
# published full-ranking reference numbers (../shared/datasets/README.md)
REFERENCES = {
    "beauty-p1": [
        ("ICLRec (WWW 2022), authors' README", {
            "HR@5": 0.0500, "NDCG@5": 0.0326, "HR@10": 0.0744, "NDCG@10": 0.0403,
            "HR@20": 0.1058, "NDCG@20": 0.0483}),
        ("SASRec + CE, RecBole 1.2.1 on a 2-core machine (issue 12)", {
            "HR@20": 0.1246, "NDCG@20": 0.0647}),
        ("BSARec (AAAI 2024), authors' logs", {"HR@20": 0.1391, "NDCG@20": 0.0703}),
    ],
}

MEASURE = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from seqvae.compare import compare, make_split
from seqvae.pipeline import prepare
from seqvae.training import SeqVAEConfig
args = json.loads(sys.argv[1])
sequences = prepare(args["path"], min_rating=args["min_rating"]).sequences
split = make_split(sequences, args["protocol"], seed=args["split_seed"],
                   min_length=args["min_length"])
started = time.perf_counter()
result = compare(sequences, args["protocol"], [args["model"]], args["ks"], split=split,
                 seqvae_config=SeqVAEConfig(epochs=args["epochs"], **args["seqvae"]),
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
out = result.to_dict()
evaluation = result.results[0].evaluation
import numpy as np
np.savez_compressed(args["per_user"], users=np.asarray(evaluation.users).astype(str),
                    **{k: v for k, v in evaluation.per_user.items() if k.startswith(("NDCG", "HR"))})
out["seconds"] = time.perf_counter() - started
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def per_user_path(name: str, setting: str, model: str) -> Path:
    """Where one model's per-user test values of one run are kept (not committed)."""
    return HERE / ".work" / "per-user" / name / setting / f"{model}.npz"


def run(setting: str, model: str, epochs: int, seqvae: dict, split_seed: int = 0,
        name: str = "quality") -> dict:
    spec = SETTINGS[setting]
    kept = per_user_path(name, setting, model)
    kept.parent.mkdir(parents=True, exist_ok=True)
    args = {**{k: v for k, v in spec.items() if k != "path"}, "path": str(spec["path"]),
            "model": model, "epochs": epochs, "seqvae": seqvae, "split_seed": split_seed,
            "per_user": str(kept)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(args)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(setting: str, rows: list[dict], ks: list[int], caps: dict[str, int]) -> list[str]:
    columns = [f"{m}@{k}" for k in ks for m in ("NDCG", "HR")]
    if SETTINGS[setting]["protocol"] == "holdout-users":
        columns = ["NDCG@100", "TruncatedRecall@20", "TruncatedRecall@50", "NDCG@20", "HR@20"]
    columns += ["AUC", f"Coverage@{ks[-1]}", f"AvgPopularity@{ks[-1]}"]
    lines = ["| model | " + " | ".join(c.replace("TruncatedRecall", "Recall") for c in columns)
             + " | chosen on validation | fit s | eval s | peak memory |",
             "|---|" + "---:|" * len(columns) + "---|---:|---:|---:|"]
    for row in rows:
        result = row["results"][0]
        params = result["params"]
        chosen = ", ".join(f"{k}={params[k]}" for k in ("l2", "neighbours", "epochs")
                           if k in params)
        if result["model"] in ("seqvae", "sasrec") and setting in caps:
            chosen += f" (limit {caps[setting]})"
        cells = [f"{result['metrics'][c]:.4f}" if not c.startswith("AvgPopularity")
                 else f"{result['metrics'][c]:.0f}" for c in columns]
        lines.append(f"| {result['model']} | " + " | ".join(cells) + f" | {chosen or '—'} | "
                     f"{result['fit_seconds']:.0f} | {result['eval_seconds']:.1f} | "
                     f"{row['peak_rss_mb']:,.0f} MB |")
    for name, values in REFERENCES.get(setting, []):
        cells = [f"{values[c]:.4f}" if c in values else "" for c in columns]
        lines.append(f"| *{name}* | " + " | ".join(cells) + " | published | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=30,
                        help="the epoch limit of the SeqVAE and its twin")
    parser.add_argument("--cap", action="append", default=[], metavar="SETTING=EPOCHS")
    parser.add_argument("--seqvae", default="{}", metavar="JSON",
                        help="SeqVAEConfig fields for the SeqVAE and its twin (default: its "
                        "defaults), e.g. "
                        "'{\"latent_dim\": 64}' — a setting chosen on validation")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the split's seed (default 0, the committed tables'); another "
                        "writes quality-split-SEED.json/.md")
    args = parser.parse_args()
    seqvae = json.loads(args.seqvae)
    caps = {k: int(v) for k, v in (c.split("=") for c in args.cap)}
    name = "quality" if args.split_seed == 0 else f"quality-split-{args.split_seed}"
    path = HERE / f"{name}.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    results, paired = saved.get("results", {}), saved.get("paired", {})
    for setting in args.settings.split(","):
        if not SETTINGS[setting]["path"].exists():
            print(f"{setting}: {SETTINGS[setting]['path']} not found, skipped")
            continue
        for model in args.models.split(","):
            print(f"{setting} / {model}…", flush=True)
            started = time.perf_counter()
            row = run(setting, model, caps.get(setting, args.epochs), seqvae, args.split_seed,
                      name)
            row["date"] = time.strftime("%Y-%m-%d")
            before = results.setdefault(setting, {}).get(model)
            results[setting][model] = row
            pairs = pair_up(name, setting, results[setting])
            if pairs is None:  # the SeqVAE's per-user values are not on this machine
                pairs = carried_pairs(paired.get(setting, {}), model, before, row)
            paired[setting] = pairs
            print(f"  {time.perf_counter() - started:.0f} s: "
                  + json.dumps(row["results"][0]["metrics"])[:300], flush=True)
            machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
            path.write_text(json.dumps({"machine": machine, "caps": caps,
                                        "split_seed": args.split_seed, "results": results,
                                        "paired": paired},
                                       indent=2) + "\n")
    write_markdown(json.loads(path.read_text()), path.with_suffix(".md"))


def carried_pairs(saved: dict[str, dict], model: str, before: dict | None, after: dict
                  ) -> dict[str, dict]:
    """The saved pairs of a setting that still hold after `model` was rerun (`before` its
    saved row, `after` the new one) where the SeqVAE's per-user values are not at hand to pair
    again: a pair stays while both rows it compares are unchanged, so the rerun model's only if
    its test is the saved one (`same_test`), and none if the SeqVAE itself was rerun."""
    if model == "seqvae":
        return {}
    if before is not None and same_test(before, after):
        return dict(saved)
    return {m: pair for m, pair in saved.items() if m != model}


def same_test(before: dict, after: dict) -> bool:
    """Whether two runs of a model scored the same on the test: every metric within a
    millionth of itself (EASE in single precision moved Beauty P2's means by 4e-8, its
    validation by less than 1e-4 at every λ)."""
    old, new = before["results"][0]["metrics"], after["results"][0]["metrics"]
    return old.keys() == new.keys() and all(
        abs(old[k] - new[k]) <= 1e-6 * max(1.0, abs(old[k])) for k in old)


def pair_up(name: str, setting: str, by_model: dict[str, dict]) -> dict[str, dict] | None:
    """The SeqVAE's lead over each other model of `setting` on the same test users: the mean
    per-user difference of the selection metric and its paired bootstrap interval. Only models
    whose kept per-user values reproduce their row's test metric take part, so a file left by
    another run is never paired with this one's table. None where the SeqVAE's own per-user
    values are not kept (another machine ran it)."""
    import numpy as np

    from seqvae.compare import paired_difference

    def kept(model: str) -> tuple[np.ndarray, np.ndarray] | None:
        file, row = per_user_path(name, setting, model), by_model.get(model)
        if row is None or not file.exists():
            return None
        result, metric = row["results"][0], row["selection"]
        with np.load(file) as values:
            users, per_user = values["users"], values[metric]
        if not np.isclose(np.nan_to_num(per_user).mean(), result["metrics"][metric]):
            return None
        return users, per_user

    mine = kept("seqvae")
    if mine is None:
        return None
    out = {}
    for model in MODELS:
        theirs = kept(model) if model != "seqvae" else None
        if theirs is not None and np.array_equal(theirs[0], mine[0]):
            out[model] = {"metric": by_model["seqvae"]["selection"],
                          **paired_difference(mine[1], theirs[1])}
    return out


def write_markdown(saved: dict, out: Path) -> None:
    machine, caps, results = saved["machine"], saved.get("caps", {}), saved["results"]
    split = f" The split's seed is {saved['split_seed']}." if saved.get("split_seed") else ""
    lines = [f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python "
             f"{machine['python']}; latest run {machine['date']}. Each model in a fresh "
             f"process; every choice on validation, test evaluated once per model.{split}", ""]
    for setting, by_model in results.items():
        rows = [by_model[m] for m in MODELS if m in by_model]
        if not rows:
            continue
        first = rows[0]
        data = first["dataset"]
        lines += [f"### {setting}: {first['protocol']}, {data['users']:,} users, "
                  f"{data['items']:,} items, {data['events']:,} events (choices on validation "
                  f"{first['selection']})", ""]
        dates = sorted({row["date"] for row in rows if "date" in row})
        if dates:
            lines[-2] = lines[-2][:-1] + f"; measured on {', '.join(dates)})"
        lines += [*table(setting, rows, first["ks"], caps), ""]
        pairs = saved.get("paired", {}).get(setting, {})
        if pairs:
            first_pair = next(iter(pairs.values()))
            lines += [f"The SeqVAE's lead on the same {first_pair['users']:,} test users "
                      f"({first_pair['metric']}: the mean per-user difference, its 95% paired "
                      "bootstrap interval, and the shares of users it ranks better / worse):", ""]
            lines += [f"- over {model}: {p['difference']:+.4f} [{p['low']:+.4f}, "
                      f"{p['high']:+.4f}], {p['above']:.0%} / {p['below']:.0%}"
                      for model, p in pairs.items()]
            lines += [""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
