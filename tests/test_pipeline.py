"""seqvae.pipeline: the one flow the CLI, the dashboard's jobs and the benchmarks share."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from seqvae.bundle import load, save
from seqvae.errors import TrainingDataError
from seqvae.pipeline import encode_log, prepare, train, training_split
from seqvae.sample import generate
from seqvae.training import SeqVAEConfig

TINY = SeqVAEConfig(embed_dim=16, hidden_dim=32, latent_dim=8, max_len=20, stride=10, epochs=2,
                    patience=2, seed=3)


@pytest.fixture(scope="module")
def rated_log() -> bytes:
    events = generate(n_users=150, n_items=80, seed=4).events.copy()
    events["rating"] = np.random.default_rng(0).integers(1, 6, len(events))
    return events.to_csv(index=False).encode()


def test_prepare_reads_filters_and_encodes_with_one_report(rated_log):
    data = prepare(io.BytesIO(rated_log), min_rating=3, name="rated.csv")
    dropped = data.report.dropped["below_min_rating"]
    frame = pd.read_csv(io.BytesIO(rated_log))
    assert dropped == int((frame["rating"] < 3).sum())
    assert data.report.balanced and data.report.rows_kept == data.sequences.n_events
    assert data.log.frame["value"].min() >= 3
    # the same steps on a log already in memory (the dashboard's) give the same sequences
    again = encode_log(prepare(io.BytesIO(rated_log), name="rated.csv").log, min_rating=3)
    np.testing.assert_array_equal(again.sequences.items, data.sequences.items)


def test_train_tests_the_best_epoch_and_saves_what_it_measured(rated_log, tmp_path):
    data = prepare(io.BytesIO(rated_log), name="rated.csv")
    phases: list[str] = []
    trained = train(data.sequences, TINY, on_phase=phases.append, encode_users=True,
                    popularity=True)
    assert phases == ["testing", "encoding"]
    assert set(trained.popularity) == set(trained.test)  # the floor, on the same test users
    assert 0 < trained.popularity["HR@10"] < 1
    assert trained.recommender.history_ is data.sequences  # recommends from full sequences
    assert trained.test_users == data.sequences.n_users
    assert set(trained.test) == {"NDCG@10", "HR@10"} and 0 < trained.test["HR@10"] <= 1
    assert trained.metrics["best_epoch"] == trained.history.best_epoch
    folder = trained.save(tmp_path / "model", data.report)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(trained.test)
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["source"] == "rated.csv" and config["data"]["users"] == 150
    assert load(folder).metrics_["test"] == pytest.approx(trained.test)


def test_a_log_that_cannot_train_is_refused_before_any_epoch():
    one_event_each = b"user,item,ts\n1,a,1\n2,b,2\n3,a,3\n"
    with pytest.raises(TrainingDataError):
        training_split(prepare(io.BytesIO(one_event_each), name="tiny.csv").sequences)


def test_refit_retrains_on_every_event_for_the_chosen_epochs(rated_log, tmp_path):
    data = prepare(io.BytesIO(rated_log), name="rated.csv")
    plain = train(data.sequences, TINY)
    phases: list[str] = []
    batches: list[int] = []
    trained = train(data.sequences, TINY, refit=True, on_phase=phases.append,
                    encode_users=True, on_batch=lambda p: batches.append(p.epochs))
    assert phases == ["testing", "refitting", "encoding"]
    best = trained.history.best_epoch
    assert trained.refit is not None and trained.refit["epochs"] == best
    assert trained.refit["events"] == data.sequences.n_events
    # the test is the held-out model's, measured before the refit: the plain run's
    assert trained.test == pytest.approx(plain.test)
    model = trained.recommender
    assert model is not plain.recommender and model.history_ is data.sequences
    assert model.config_.epochs == best and batches[-1] == best  # the refit ran `best` epochs
    # with the held-out run's settings as used (its batch size, not "auto" chosen again)
    assert replace(model.config_, epochs=1) == replace(plain.recommender.config_, epochs=1)
    weights = [np.asarray(w) for w in model.model_.weights]
    before = [np.asarray(w) for w in plain.recommender.model_.weights]
    assert any(not np.allclose(a, b) for a, b in zip(weights, before, strict=True))
    folder = trained.save(tmp_path / "model", data.report)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["refit"]["epochs"] == best and "before the refit" in metrics["refit"]["scored"]
    history = json.loads((folder / "history.json").read_text())
    assert history["best_epoch"] == best and history["epochs"][0]["validation"]  # the curves
    # the model records its evaluation, so a save without metrics (the dashboard's zip) keeps it
    again = json.loads((save(model, tmp_path / "again") / "metrics.json").read_text())
    assert again == json.loads(json.dumps(trained.metrics))


def test_a_cancelled_refit_keeps_the_tested_model(rated_log):
    from seqvae.training import CancelToken

    data = prepare(io.BytesIO(rated_log), name="rated.csv")
    token = CancelToken()

    def phase(name: str) -> None:
        if name == "refitting":
            token.cancel()

    trained = train(data.sequences, TINY, refit=True, on_phase=phase, cancel=token,
                    encode_users=True)
    assert trained.refit is None and "refit" not in trained.metrics
    assert trained.recommender.training_history_ is trained.history  # the tested model
    assert trained.recommender.config_.epochs == TINY.epochs
    caches = trained.recommender._encoding_caches  # μ of every user, in both views
    assert {view: c[2].shape[0] for view, c in caches.items()} == {
        "next": data.sequences.n_users, "taste": data.sequences.n_users}
