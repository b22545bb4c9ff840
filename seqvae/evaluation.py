"""Ranking metrics over full item rankings: small pure NumPy functions.

Every function takes `hits`, a boolean matrix (n_users, K) that says whether the item ranked at
each of the top-K positions is one of the user's targets, and, where needed, the number of targets
of each user. Ranking is over *all* items (no sampled negatives), with the user's input items
excluded — see `top_k`.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores of each row, best first. (n, V) -> (n, k).

    Ties are broken by the lower index, so results are reproducible.
    """
    if k < 1:
        raise ValueError(f"`k` should be a positive integer. Received: `k`={k}")
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def hits_at_k(top_items: np.ndarray, target_offsets: np.ndarray,
              target_items: np.ndarray) -> np.ndarray:
    """(n, k) bool: is ``top_items[u, r]`` among user u's targets (CSR `target_offsets`)."""
    n, _k = top_items.shape
    owner = np.repeat(np.arange(n), np.diff(target_offsets))
    # encode (user, item) pairs as one int64 so membership is one vectorised lookup
    width = int(max(top_items.max(initial=0), target_items.max(initial=0))) + 1
    target_keys = np.unique(owner.astype(np.int64) * width + target_items)
    keys = np.arange(n, dtype=np.int64)[:, None] * width + top_items
    return np.isin(keys, target_keys)


def ndcg(hits: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    """Per-user NDCG@K = DCG / IDCG.

    DCG = Σ_r hits[r] / log2(r + 2) (r from 0); IDCG is the DCG of min(K, |targets|) hits at the
    top. With one target at rank r (0-based): 1 / log2(r + 2).
    """
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_targets, k) - 1, 0, k - 1)]
    return np.asarray(np.where(n_targets > 0, dcg / ideal, 0.0))


def hit_rate(hits: np.ndarray) -> np.ndarray:
    """Per-user HR@K: 1 if any target is in the top K."""
    return np.asarray(hits.any(axis=1), dtype=np.float64)


def recall(hits: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    """Per-user Recall@K = hits / |targets|."""
    return np.asarray(np.where(n_targets > 0, hits.sum(axis=1) / np.maximum(n_targets, 1), 0.0))
