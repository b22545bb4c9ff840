"""seqvae.latent: projections, samples, clusters, cohorts and directions, on small known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqvae.latent import (
    characterise,
    cluster_names,
    cluster_users,
    nearest_users,
    project_pca,
    stratified_sample,
    user_frame,
)
from seqvae.logs import read_log
from seqvae.sequences import encode


def tiny():
    rows = [("a", "x", "view", 1), ("a", "y", "buy", 2), ("b", "x", "view", 3),
            ("b", "z", "view", 4), ("c", "y", "buy", 5), ("c", "y", "buy", 6), ("d", "w", "view", 7)]
    log, _ = read_log(pd.DataFrame(rows, columns=["user", "item", "event", "ts"]))
    return encode(log)


def test_pca_recovers_the_direction_of_largest_spread():
    rng = np.random.default_rng(0)
    points = np.c_[rng.normal(scale=10, size=500), rng.normal(scale=1, size=500),
                   rng.normal(scale=0.1, size=500)]
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    coords = project_pca(points @ rotation, 2)
    assert coords.shape == (500, 2)
    # the first component is the first original axis (up to sign, fixed to be deterministic)
    assert abs(np.corrcoef(coords[:, 0], points[:, 0])[0, 1]) > 0.999
    assert abs(np.corrcoef(coords[:, 1], points[:, 1])[0, 1]) > 0.99
    assert np.array_equal(coords, project_pca(points @ rotation, 2))


def test_stratified_sample_keeps_shares_and_every_group():
    groups = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rows = stratified_sample(groups, 100, seed=1)
    assert rows.size == 100 and np.all(np.diff(rows) > 0)
    counts = np.bincount(groups[rows], minlength=3)
    assert counts.tolist() == [90, 9, 1]
    # a group too small for its share still gets one row; the total stays at the limit
    groups = np.array([0] * 995 + [1, 2, 3, 4, 5])
    rows = stratified_sample(groups, 10)
    assert rows.size == 10 and set(groups[rows]) == {0, 1, 2, 3, 4, 5}
    assert stratified_sample(groups[:7], 10).tolist() == list(range(7))


def test_clusters_find_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]])
    points = np.concatenate([c + rng.normal(scale=0.3, size=(50, 3)) for c in centres])
    truth = np.repeat([0, 1, 2], 50)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, cluster_users(points, k=3)) == 1.0
    assert adjusted_rand_score(truth, cluster_users(points, method="hdbscan")) > 0.9
    with pytest.raises(ValueError, match="method"):
        cluster_users(points, method="dbscan")


def test_characterise_hand_worked():
    seqs = tiny()
    vocab, events = seqs.item_vocab, seqs.event_vocab
    rows = seqs.user_position(["a", "c"])
    items, event_table = characterise(seqs, rows, vocab, events, min_users=1)
    # y: both cohort users (share 1) against 2 of 4 users (0.5) -> lift 2; x: 1/2 vs 2/4 -> 1
    by_item = items.set_index("item")
    assert by_item.loc["y", "lift"] == pytest.approx(2.0)
    assert by_item.loc["x", "lift"] == pytest.approx(1.0)
    assert items["item"].iloc[0] == "y"
    assert "w" not in by_item.index and "z" not in by_item.index  # no cohort user has them
    # events: the cohort's 4 events are 3 buys and 1 view; overall 3 buys of 7
    by_event = event_table.set_index("event")
    assert by_event.loc["buy", "lift"] == pytest.approx((3 / 4) / (3 / 7))
    names = cluster_names(seqs, np.array([0, 1, 0, 1]), vocab, events)
    assert names[0].startswith("0 · y")


def test_user_frame_and_nearest_users():
    seqs = tiny()
    attributes = pd.DataFrame({"segment": ["s1", "s2"]}, index=pd.Index(["a", "d"]))
    frame = user_frame(seqs, seqs.item_vocab, seqs.event_vocab, users=attributes)
    row = frame.set_index("user")
    assert row.loc["c", "dominant_event"] == "buy" and row.loc["b", "dominant_event"] == "view"
    assert row.loc["a", "last_items"] == "y · x"  # most recent first
    assert row.loc["a", "attr:segment"] == "s1" and pd.isna(row.loc["b", "attr:segment"])
    assert row.loc["d", "days_since_last"] == pytest.approx(0.0)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    rows, distance = nearest_users(vectors, 0, k=3)
    assert rows.tolist() == [1, 2, 3]
    assert distance[0] < distance[1] < distance[2] == pytest.approx(2.0)
