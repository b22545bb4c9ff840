"""seqvae.compare: choices on validation only; the test holdout touched once per model, last."""

from __future__ import annotations

import numpy as np
import pytest

import seqvae.compare as compare_module
from seqvae.baselines import MultVAEConfig
from seqvae.compare import GRIDS, compare, make_split
from seqvae.logs import read_log
from seqvae.sequences import encode


@pytest.fixture(scope="module")
def sequences(sample_events):
    log, _ = read_log(sample_events)
    return encode(log)


def test_the_test_split_is_touched_once_per_model_after_every_choice(sequences, monkeypatch):
    split = make_split(sequences, "leave-one-out")
    calls = []
    real = compare_module.evaluate

    def spy(recommender, holdout, *args, **kwargs):
        calls.append((recommender.name, "test" if holdout is split.test else
                      "validation" if holdout is split.validation else "other"))
        return real(recommender, holdout, *args, **kwargs)

    monkeypatch.setattr(compare_module, "evaluate", spy)
    result = compare(sequences, models=["pop", "ease", "multvae"], ks=[10], split=split,
                     multvae_config=MultVAEConfig(hidden_dim=32, latent_dim=8, epochs=2))
    assert [c for c in calls if c[1] == "other"] == []
    for name in ("pop", "ease", "multvae"):
        mine = [kind for model, kind in calls if model == name]
        assert mine.count("test") == 1 and mine[-1] == "test"
    # EASE tried its whole grid on validation and kept the best
    ease = result.results[1]
    assert len(ease.tried) == len(GRIDS["ease"])
    assert ease.validation["NDCG@10"] == max(t["NDCG@10"] for t in ease.tried)
    assert ease.params["l2"] == max(ease.tried, key=lambda t: t["NDCG@10"])["l2"]


def test_protocols_and_bad_names(sequences):
    assert make_split(sequences, "holdout-users").protocol == "holdout-users"
    assert make_split(sequences, "time-cut").protocol == "time-cut"
    with pytest.raises(ValueError, match="protocol"):
        make_split(sequences, "random")
    with pytest.raises(ValueError, match="models"):
        compare(sequences, models=["svd"])


def test_summary_intervals_and_ties_come_from_a_paired_bootstrap():
    from seqvae.compare import Comparison, ModelResult, default_metrics, summary
    from seqvae.evaluation import Evaluation

    rng = np.random.default_rng(0)
    n = 2000
    strong = (rng.random(n) < 0.30).astype(float)
    # the same users as `strong`, a few hits lost and fewer gained elsewhere: a difference the
    # paired bootstrap cannot tell from 0 (a loss on 6 users and no gain would be significant)
    close = strong.copy()
    close[np.flatnonzero(strong)[:6]] = 0.0
    close[np.flatnonzero(strong == 0)[:4]] = 1.0
    weak = (rng.random(n) < 0.10).astype(float)

    def result(name, hits):
        per_user = {"NDCG@10": hits * 0.5, "HR@10": hits, "Recall@10": hits}
        metrics = {k: float(v.mean()) for k, v in per_user.items()} | {"Coverage@10": 0.4}
        return ModelResult(
            model=name,
            params={},
            validation={},
            metrics=metrics,
            fit_seconds=0.0,
            eval_seconds=0.0,
            evaluation=Evaluation(metrics, per_user, np.arange(n), 0.0),
        )

    comparison = Comparison(
        "leave-one-out", {}, [10], "NDCG@10", [result("a", strong), result("b", close), result("c", weak)]
    )
    assert default_metrics(comparison) == ["NDCG@10", "HR@10", "Coverage@10"]
    table = summary(comparison, n_boot=400)
    assert list(table["HR@10 vs best"]) == ["best", "tied", "worse"]
    for model, hits in (("a", strong), ("c", weak)):
        low, high = table.loc[model, "HR@10 low"], table.loc[model, "HR@10 high"]
        assert low < hits.mean() < high
        # about the binomial standard error's width
        se = np.sqrt(hits.mean() * (1 - hits.mean()) / n)
        assert 2.5 * se < high - low < 5.5 * se
    assert np.isnan(table.loc["a", "Coverage@10 low"])  # catalogue-level: no interval
    # what the Evaluate page says in words: the best, those level with it, those below
    from seqvae.compare import leaders

    assert leaders(table, "HR@10") == ("a", ["b"], ["c"])
    assert leaders(table, "Coverage@10")[0] == "a"  # equal coverage: the first is named best


def test_paired_difference_measures_one_models_lead_on_the_same_users():
    from seqvae.compare import paired_difference

    rng = np.random.default_rng(1)
    n = 3000
    base = rng.random(n)
    # a constant lead is measured exactly, with no spread
    exact = paired_difference(base + 0.01, base, n_boot=200)
    assert exact["difference"] == pytest.approx(0.01)
    assert exact["low"] == pytest.approx(0.01) and exact["high"] == pytest.approx(0.01)
    assert exact["above"] == 1.0 and exact["below"] == 0.0 and exact["users"] == n
    # a noisy lead: the interval is the paired one, about ±1.96 standard errors of the differences
    other = base + rng.normal(0.02, 0.2, n)
    lead = paired_difference(other, base, n_boot=1000)
    se = np.std(other - base) / np.sqrt(n)
    assert lead["low"] > 0.0 and lead["low"] < lead["difference"] < lead["high"]
    assert 3.0 * se < lead["high"] - lead["low"] < 4.8 * se
    # the same values the other way round: the lead turns into its negative
    behind = paired_difference(base, other, n_boot=1000)
    assert behind["difference"] == pytest.approx(-lead["difference"])
    assert behind["above"] == pytest.approx(lead["below"])
    # a missing value counts as 0, as in `summary`; unlike users are refused
    assert paired_difference(np.array([np.nan, 1.0]), np.zeros(2), n_boot=10)["difference"] == 0.5
    with pytest.raises(ValueError, match="same users"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_the_quality_benchmark_pairs_only_per_user_values_its_own_table_holds(tmp_path,
                                                                              monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "quality_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    monkeypatch.setattr(quality, "HERE", tmp_path)
    rng = np.random.default_rng(2)
    users = np.array([f"u{i}" for i in range(500)])
    values = {"seqvae": rng.random(500), "sasrec": rng.random(500) * 0.9,
              "ease": rng.random(500) * 0.8, "pop": rng.random(500) * 0.1}

    def row(model, mean=None):
        metric = float(values[model].mean()) if mean is None else mean
        return {"selection": "NDCG@100", "results": [{"metrics": {"NDCG@100": metric}}]}

    for model, v in values.items():
        path = quality.per_user_path("quality", "beauty-p2", model)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, users=users if model != "pop" else users[::-1],
                            **{"NDCG@100": v})
    by_model = {m: row(m) for m in values} | {"ease": row("ease", mean=0.123)}
    pairs = quality.pair_up("quality", "beauty-p2", by_model)
    # EASE's kept values are not its row's (another run's file), pop's users are another order
    assert list(pairs) == ["sasrec"]
    assert pairs["sasrec"]["metric"] == "NDCG@100"
    assert pairs["sasrec"]["difference"] == pytest.approx(
        float((values["seqvae"] - values["sasrec"]).mean()))
    # no SeqVAE values: nothing to pair
    assert quality.pair_up("quality", "beauty-p2", {"sasrec": row("sasrec")}) is None
    # then a rerun keeps the saved pairs that still hold: another model's always, the rerun
    # model's only if its test is unchanged (float rounding aside), none if the SeqVAE reran
    saved_pairs = {"sasrec": {"difference": 0.1}, "ease": {"difference": 0.2}}
    same = row("ease", mean=0.123 + 1e-9)
    assert quality.carried_pairs(saved_pairs, "ease", row("ease", mean=0.123), same) == \
        saved_pairs
    assert quality.carried_pairs(saved_pairs, "ease", row("ease", mean=0.123),
                                 row("ease", mean=0.124)) == {"sasrec": {"difference": 0.1}}
    assert quality.carried_pairs(saved_pairs, "ease", None, same) == {
        "sasrec": {"difference": 0.1}}
    assert quality.carried_pairs(saved_pairs, "seqvae", row("seqvae"), row("seqvae")) == {}
    # the tables say when each setting's rows were measured and print the pairs beside them
    saved = {"machine": {"cpus": 2, "platform": "test", "python": "3.11", "date": "2026-12-07"},
             "results": {"beauty-p2": {m: by_model[m] | {
                 "protocol": "holdout-users", "ks": [20, 50, 100], "seconds": 1.0,
                 "peak_rss_mb": 1.0, "date": "2026-12-07" if m == "seqvae" else "2026-12-01",
                 "dataset": {"users": 500, "items": 9, "events": 9},
                 "results": [{"model": m, "params": {}, "fit_seconds": 0.0, "eval_seconds": 0.0,
                              "metrics": {k: 0.1 for k in (
                                  "NDCG@100", "TruncatedRecall@20", "TruncatedRecall@50",
                                  "NDCG@20", "HR@20", "AUC", "Coverage@100",
                                  "AvgPopularity@100")}}]} for m in ("seqvae", "sasrec")}},
             "paired": {"beauty-p2": pairs}}
    quality.write_markdown(saved, tmp_path / "quality.md")
    text = (tmp_path / "quality.md").read_text()
    assert "measured on 2026-12-01, 2026-12-07)" in text
    assert (f"- over sasrec: {pairs['sasrec']['difference']:+.4f} "
            f"[{pairs['sasrec']['low']:+.4f}, {pairs['sasrec']['high']:+.4f}]") in text
