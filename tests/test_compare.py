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
