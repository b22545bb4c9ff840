"""The baselines: one contract test for every model (the SeqVAE included), hand-worked EASE and
item-KNN, and what the personalised models must do better than popularity on the sample."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from seqvae.baselines import (
    EASE,
    ItemKNN,
    MultVAEBaseline,
    MultVAEConfig,
    Popularity,
    _top_per_row,
    interactions,
)
from seqvae.bundle import BundleError, load
from seqvae.errors import NotFittedError
from seqvae.evaluation import evaluate
from seqvae.logs import read_log
from seqvae.recommender import SeqVAERecommender
from seqvae.sequences import PAD, encode
from seqvae.splits import leave_one_out
from seqvae.training import SeqVAEConfig

TINY_MULTVAE = MultVAEConfig(hidden_dim=64, latent_dim=16, epochs=3, patience=3, batch_size=128)
TINY_SEQVAE = SeqVAEConfig(embed_dim=16, hidden_dim=32, latent_dim=8, max_len=20, stride=10,
                           epochs=2, patience=2, seed=1)
NAMES = ["pop", "itemknn", "ease", "multvae", "sasrec", "seqvae"]


@pytest.fixture(scope="module")
def split(sample_events):
    log, _ = read_log(sample_events)
    return leave_one_out(encode(log))


@pytest.fixture(scope="module")
def fitted(split):
    # the estimator contract: configured in __init__, fit(split) -> self
    models = {
        "pop": Popularity().fit(split),
        "itemknn": ItemKNN(neighbours=50).fit(split),
        "ease": EASE(l2=200.0).fit(split),
        "multvae": MultVAEBaseline(TINY_MULTVAE).fit(split),
        "seqvae": SeqVAERecommender.configured(TINY_SEQVAE).fit(split),
        "sasrec": SeqVAERecommender.configured(replace(TINY_SEQVAE, variational=False)).fit(split),
    }
    for name in ("multvae", "seqvae", "sasrec"):  # epochs chosen by early stopping
        epochs = models[name].epochs_
        assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
        assert models[name].params_["epochs"] == 1 + int(np.argmax([e["NDCG@10"] for e in epochs]))
    return models


@pytest.mark.parametrize("name", NAMES)
def test_the_recommender_contract(name, fitted, split):
    model = fitted[name]
    assert model.name == name
    assert isinstance(model.params_, dict)
    users = split.validation.inputs.subset_users(np.arange(50))
    scores = model.score(users, exclude_seen=True)
    assert scores.shape == (50, split.train.item_vocab.size)
    assert np.all(scores[:, :2] == -np.inf)  # padding and OOV never score
    seen = scores[users.user_of_event, users.items]
    assert np.all(seen == -np.inf)
    unseen = np.ones_like(scores, dtype=bool)
    unseen[:, :2] = False
    unseen[users.user_of_event, users.items] = False
    assert np.all(np.isfinite(scores[unseen]))
    # without exclusion, seen items score like any other
    assert np.isfinite(model.score(users, exclude_seen=False)[:, 2:]).all()

    # recommend by user id (the history the model was fitted on)
    ids = list(split.train.users[:3])
    items, item_scores = model.recommend(ids, k=5)
    assert items.shape == item_scores.shape == (3, 5)
    assert np.all(np.diff(item_scores, axis=1) <= 0)  # best first
    for row, _user in enumerate(ids):
        history = set(split.train.item_vocab.token(split.train.of_user(row)["items"]))
        assert not history & set(items[row])
    # raw sequences of users the model never saw; unknown items are ignored with a warning
    known = list(split.train.item_vocab.token(np.arange(2, 6)))
    with pytest.warns(UserWarning, match="1 item"):
        raw_items, _ = model.recommend([[*known, "no-such-item"]], k=5)
    assert not set(known) & set(raw_items[0])
    with pytest.raises(KeyError, match="no-such-user"):
        model.recommend(["no-such-user"])
    with pytest.raises(ValueError, match="`k`"):
        model.recommend(ids, k=0)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_saves_and_loads_to_the_same_scores(name, fitted, split, tmp_path):
    """One contract for the model directory: whatever the model, `save` then `seqvae.load`
    gives the same kind of model with the same scores, recommendations and similar items."""
    model = fitted[name]
    model.save(tmp_path / name, metrics={"note": name})
    again = load(tmp_path / name)
    assert type(again) is type(model) and again.name == model.name
    assert again.params_ == model.params_ or name in ("seqvae", "sasrec")
    assert again.metrics_ == {"note": name}
    users = split.validation.inputs.subset_users(np.arange(40))
    np.testing.assert_allclose(again.score(users), model.score(users), rtol=1e-5, atol=1e-6)
    ids = list(split.train.users[:4])
    assert again.recommend(ids, k=5)[0].tolist() == model.recommend(ids, k=5)[0].tolist()
    item = split.train.item_vocab.token(np.array([5]))[0]
    if name in ("pop", "multvae"):  # no item-item notion of their own
        with pytest.raises(TypeError, match="similar items"):
            model.similar_items(item)
    else:
        similar, weights = model.similar_items(item, k=5)
        assert item not in similar and np.all(np.diff(weights) <= 0)
        assert again.similar_items(item, k=5)[0].tolist() == similar.tolist()
    # a stored array changed after saving is refused, naming the file
    stored = tmp_path / name / ("model.keras" if name in ("seqvae", "sasrec") else "weights.npz")
    stored.write_bytes(stored.read_bytes()[:-8] + b"tampered")
    with pytest.raises(BundleError, match=stored.name):
        load(tmp_path / name)


@pytest.mark.parametrize("factory", [Popularity, ItemKNN, EASE, MultVAEBaseline])
def test_an_unfitted_baseline_says_so(factory, split):
    with pytest.raises(NotFittedError, match="fit"):
        factory().score(split.validation.inputs)


def test_personalised_baselines_beat_popularity_on_the_sample(fitted, split):
    """The sample's users differ in taste (six planted segments): a model that reads the user's
    items should rank the next item better than the most popular items do."""
    ndcg = {name: evaluate(fitted[name], split.validation, [10], with_auc=False).metrics["NDCG@10"]
            for name in ("pop", "itemknn", "ease")}
    assert ndcg["itemknn"] > 1.5 * ndcg["pop"]
    assert ndcg["ease"] > 1.5 * ndcg["pop"]


def tiny_log(rows):
    log, _ = read_log(pd.DataFrame(rows, columns=["user", "item", "ts"]))
    return encode(log)


def test_interactions_are_binary_and_skip_padding():
    seqs = tiny_log([("a", "x", 1), ("a", "x", 2), ("a", "y", 3), ("b", "y", 4)])
    matrix = interactions(seqs).toarray()
    assert matrix.shape == (2, seqs.item_vocab.size)
    assert matrix.max() == 1.0 and matrix.sum() == 3
    assert matrix[:, PAD].sum() == 0


def test_ease_matches_the_closed_form():
    rows = [("a", "x", 1), ("a", "y", 2), ("b", "y", 3), ("b", "z", 4), ("c", "x", 5),
            ("c", "z", 6), ("c", "y", 7), ("d", "w", 8), ("d", "x", 9)]
    seqs = tiny_log(rows)
    model = EASE(l2=2.0).fit(seqs)
    x = interactions(seqs).toarray().astype(np.float64)[:, 2:]
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert model.weights_[2:, 2:] == pytest.approx(b, abs=1e-6)


def test_item_knn_hand_worked():
    # x: users a, b; y: users a, b, c; z: user c -> cos(x, y) = 2 / sqrt(2 * 3), cos(y, z) =
    # 1 / sqrt(3), cos(x, z) = 0
    seqs = tiny_log([("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "y", 4), ("c", "y", 5),
                     ("c", "z", 6)])
    model = ItemKNN(neighbours=1).fit(seqs)
    vocab = seqs.item_vocab
    x, y, z = vocab.lookup(["x", "y", "z"])
    sim = model.similarity_.toarray()
    # each item keeps its one nearest neighbour
    assert sim[x, y] == pytest.approx(2 / np.sqrt(6)) and sim[x, z] == 0
    assert sim[z, y] == pytest.approx(1 / np.sqrt(3))
    assert sim[y, x] == pytest.approx(2 / np.sqrt(6)) and sim[y, z] == 0
    # a user who has z only: y is recommended first
    items, _ = model.recommend([["z"]], k=1)
    assert items[0, 0] == "y"


def test_top_per_row_keeps_the_largest_and_breaks_ties_by_column():
    matrix = sp.csr_matrix(np.array([[0.0, 3, 1, 3], [0, 0, 0, 0], [5, 0, 0, 0], [1, 2, 3, 4]]))
    kept = _top_per_row(matrix, 2).toarray()
    assert kept.tolist() == [[0, 3, 0, 3], [0, 0, 0, 0], [5, 0, 0, 0], [0, 0, 3, 4]]
