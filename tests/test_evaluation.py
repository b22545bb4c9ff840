"""seqvae.evaluation: each metric on a hand-worked example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from seqvae.evaluation import (
    EvaluationCancelled,
    auc,
    coverage,
    evaluate,
    f1,
    hit_rate,
    hits_at_k,
    mean_popularity,
    mrr,
    ndcg,
    precision,
    recall,
    top_k,
    top_k_numpy,
    truncated_recall,
)
from seqvae.logs import read_log
from seqvae.sequences import encode
from seqvae.splits import leave_one_out
from seqvae.training import CancelToken


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf],
                       [3.0, 2.0, 1.0, 0.0, 4.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [4, 0, 1]]
    with pytest.raises(ValueError, match="`k`"):
        top_k(scores, 0)


def test_top_k_gives_the_same_items_with_tensorflow_loaded_as_with_numpy():
    import tensorflow  # noqa: F401  (loaded: `top_k` takes TensorFlow's path for float32)

    rng = np.random.default_rng(4)
    # many ties (scores rounded to one decimal) and excluded items (-inf) in every row
    scores = np.round(rng.standard_normal((300, 500)), 1).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    for k in (1, 10, 50, 500):
        assert np.array_equal(top_k(scores, k), top_k_numpy(scores, k))
    worked = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf]], np.float32)
    assert top_k(worked, 5).tolist() == [[1, 3, 2, 0, 4]]


def test_hits_at_k():
    top = np.array([[5, 7, 9], [1, 2, 3]])
    # user 0's targets: {9, 4}; user 1's: {2}
    hits = hits_at_k(top, np.array([0, 2, 3]), np.array([9, 4, 2]))
    assert hits.tolist() == [[False, False, True], [False, True, False]]


def test_ndcg_hand_worked():
    # one target at rank 3 (0-based 2): 1 / log2(4) = 0.5
    # two targets at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309 = 0.9197
    hits = np.array([[False, False, True], [True, False, True], [False, False, False]])
    n_targets = np.array([1, 2, 1])
    values = ndcg(hits, n_targets)
    assert values[0] == pytest.approx(0.5)
    assert values[1] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert values[2] == 0.0
    # more targets than K: the ideal is K hits
    assert ndcg(np.array([[True, True]]), np.array([5]))[0] == pytest.approx(1.0)


def test_hit_rate_and_recall_hand_worked():
    hits = np.array([[False, True, True], [False, False, False]])
    assert hit_rate(hits).tolist() == [1.0, 0.0]
    # user 0 has 4 targets, 2 found: 0.5; user 1 has none found of 1: 0
    assert recall(hits, np.array([4, 1])).tolist() == [0.5, 0.0]


def test_truncated_recall_hand_worked():
    hits = np.array([[True, True, False], [True, False, False], [False, False, False]])
    # 2 hits of 5 targets at K=3: 2 / min(3, 5) = 2/3 (plain recall: 2/5)
    # 1 hit of 1 target: 1; no target found: 0
    assert truncated_recall(hits, np.array([5, 1, 2])).tolist() == pytest.approx([2 / 3, 1, 0])
    assert recall(hits, np.array([5, 1, 2]))[0] == pytest.approx(2 / 5)


def test_precision_f1_mrr_hand_worked():
    hits = np.array([[False, True, False, True], [False, False, False, False],
                     [True, False, False, False]])
    assert precision(hits).tolist() == [0.5, 0.0, 0.25]
    # user 0: P = 2/4, R = 2/4 (4 targets) -> F1 = 0.5; with 2 targets R = 1 -> F1 = 2/3
    assert f1(hits, np.array([4, 1, 1]))[0] == pytest.approx(0.5)
    assert f1(hits, np.array([2, 1, 1]))[0] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f1(hits, np.array([2, 1, 1]))[1] == 0.0
    # user 2: P = 1/4, R = 1 -> 2 * 0.25 / 1.25 = 0.4
    assert f1(hits, np.array([2, 1, 1]))[2] == pytest.approx(0.4)
    # first hit at rank 2 -> 1/2; none -> 0; rank 1 -> 1
    assert mrr(hits).tolist() == [0.5, 0.0, 1.0]


def test_auc_hand_worked():
    inf = -np.inf
    # items 0, 1 (padding, OOV) and 6 (seen) are excluded; candidates 2..5
    scores = np.array([[inf, inf, 0.9, 0.5, 0.1, 0.7, inf],
                       [inf, inf, 0.9, 0.5, 0.1, 0.7, inf],
                       [inf, inf, 0.5, 0.5, 0.1, 0.7, inf],
                       [inf, inf, 0.9, 0.5, 0.1, 0.7, inf]])
    # user 0: target 3 (0.5) vs negatives 0.9, 0.1, 0.7 -> beats one of three: 1/3
    # user 1: targets 2 (0.9) and 4 (0.1) vs negatives 0.5, 0.7 -> (2 + 0) / (2 * 2) = 0.5
    # user 2: target 3 (0.5) vs 0.5 (tie, counts 1/2), 0.1, 0.7 -> 1.5 / 3 = 0.5
    # user 3: its only target was seen (excluded) -> undefined
    offsets = np.array([0, 1, 3, 4, 5])
    items = np.array([3, 2, 4, 3, 6])
    values = auc(scores, offsets, items)
    assert values[:3].tolist() == pytest.approx([1 / 3, 0.5, 0.5])
    assert np.isnan(values[3])


def test_auc_matches_scikit_learn_on_random_scores():
    rng = np.random.default_rng(0)
    n, v = 40, 30
    scores = rng.integers(0, 6, size=(n, v)).astype(np.float64)  # many ties
    scores[rng.random((n, v)) < 0.2] = -np.inf  # excluded items
    scores[:, :2] = -np.inf
    targets = [rng.choice(np.arange(2, v), size=rng.integers(1, 6), replace=False) for _ in range(n)]
    offsets = np.concatenate([[0], np.cumsum([t.size for t in targets])])
    values = auc(scores, offsets, np.concatenate(targets))
    for user in range(n):
        candidates = np.flatnonzero(np.isfinite(scores[user]))
        labels = np.isin(candidates, targets[user])
        if labels.all() or not labels.any():
            assert np.isnan(values[user])
        else:
            assert values[user] == pytest.approx(roc_auc_score(labels, scores[user, candidates]))


def test_coverage_and_popularity_hand_worked():
    top = np.array([[2, 3], [3, 4]])
    # items 2, 3, 4 of a 4-item catalogue were recommended
    assert coverage(top, 4) == 0.75
    popularity = np.array([0, 0, 10, 20, 30])
    assert mean_popularity(top, popularity).tolist() == [15.0, 25.0]
    # -1: nothing recommended at that rank (catalogue smaller than K)
    assert mean_popularity(np.array([[4, -1]]), popularity).tolist() == [30.0]
    assert coverage(np.array([[4, -1]]), 4) == 0.25


class FixedScores:
    """Scores item j as `weights[j]` for every user (a popularity-like model)."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=np.float32)

    def score(self, sequences, exclude_seen=True):
        scores = np.tile(self.weights, (sequences.n_users, 1))
        scores[:, :2] = -np.inf
        if exclude_seen:
            scores[sequences.user_of_event, sequences.items] = -np.inf
        return scores


def test_evaluate_end_to_end_hand_worked():
    # three users; leave-one-out keeps the last event as the test target
    frame = pd.DataFrame({
        "user": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
        "item": ["x", "y", "z", "x", "z", "w", "y", "z", "x"],
        "timestamp": list(range(9)),
    })
    log, _ = read_log(frame)
    seqs = encode(log)
    split = leave_one_out(seqs)
    vocab = seqs.item_vocab
    order = ["w", "x", "y", "z"]  # the model's ranking, best first
    weights = np.zeros(vocab.size)
    for rank, token in enumerate(order):
        weights[vocab.lookup([token])[0]] = 10 - rank
    result = evaluate(FixedScores(weights), split.test, [1, 2])
    # a: input x y (excluded) -> ranking w z; target z at rank 2
    # b: input x z -> ranking w y; target w at rank 1
    # c: input y z -> ranking w x; target x at rank 2
    assert result.users.tolist() == ["a", "b", "c"]
    assert result.metrics["HR@1"] == pytest.approx(1 / 3)
    assert result.metrics["HR@2"] == pytest.approx(1.0)
    assert result.metrics["NDCG@2"] == pytest.approx((1 / math.log2(3) * 2 + 1) / 3)
    assert result.metrics["MRR@2"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert result.metrics["Precision@2"] == pytest.approx(0.5)
    # two candidates each, one target: AUC 0 (a: z below w), 1 (b), 0 (c)
    assert result.metrics["AUC"] == pytest.approx(1 / 3)
    # recommended at K=1: w only; K=2: w, z, y, x -> 4 of 4 items
    assert result.metrics["Coverage@1"] == pytest.approx(0.25)
    assert result.metrics["Coverage@2"] == pytest.approx(1.0)
    assert result.per_user["HR@1"].tolist() == [0.0, 1.0, 0.0]


def test_evaluate_scores_in_chunks_with_the_same_result(sample_events):
    log, _ = read_log(sample_events)
    split = leave_one_out(encode(log))
    model = FixedScores(np.random.default_rng(1).random(split.train.item_vocab.size))
    whole = evaluate(model, split.test, [10], chunk_users=10_000).metrics
    chunked = evaluate(model, split.test, [10], chunk_users=97).metrics
    assert chunked == pytest.approx(whole)
    token = CancelToken()
    token.cancel()
    with pytest.raises(EvaluationCancelled):
        evaluate(model, split.test, [10], cancel=token)
