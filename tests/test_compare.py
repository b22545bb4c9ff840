"""seqvae.compare: choices on validation only; the test holdout touched once per model, last."""

from __future__ import annotations

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
