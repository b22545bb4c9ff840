"""seqvae.evaluation: each metric on a hand-worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqvae.evaluation import hit_rate, hits_at_k, ndcg, recall, top_k


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf],
                       [3.0, 2.0, 1.0, 0.0, 4.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [4, 0, 1]]
    with pytest.raises(ValueError, match="`k`"):
        top_k(scores, 0)


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
