"""seqvae.latent: projections, samples, clusters, cohorts and directions, on small known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqvae.latent import (
    attribute_breakdown,
    categories_repeat,
    characterise,
    cluster_names,
    cluster_users,
    nearest_users,
    project_pca,
    stratified_sample,
    top_categories,
    user_frame,
    view_range,
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


def test_a_map_opens_on_the_body_of_its_points_and_counts_those_left_out():
    rng = np.random.default_rng(0)
    body = rng.normal(size=(2000, 2))
    assert view_range(body) is None  # a cloud without islands: the full extent is fine
    far = np.vstack([body, [[80.0, 0.0], [0.0, -60.0], [75.0, 1.0]]])
    (x, y), outside = view_range(far)
    assert outside == 3 + int(np.sum(np.any((body < [x[0], y[0]]) | (body > [x[1], y[1]]),
                                            axis=1)))
    inside = (body[:, 0] >= x[0]) & (body[:, 0] <= x[1]) & (body[:, 1] >= y[0]) & (
        body[:, 1] <= y[1])
    assert inside.mean() > 0.98 and x[1] < 10 and y[0] > -10  # the body, not the islands
    # a user searched for is kept in view, however far
    (x, y), outside = view_range(far, keep=np.array([2001]))
    assert y[0] < -60 < y[1] and x[1] < 10
    assert view_range(far[:10]) is None  # too few points to speak of a body


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
    items, event_table = characterise(seqs, rows, vocab, events, min_users=1, prior_users=0)
    # y: both cohort users (share 1) against 2 of 4 users (0.5) -> lift 2; x: 1/2 vs 2/4 -> 1
    by_item = items.set_index("item")
    assert by_item.loc["y", "lift"] == pytest.approx(2.0)
    assert by_item.loc["x", "lift"] == pytest.approx(1.0)
    # shrunk toward 1 by 2 pseudo-users on both sides: 2 observed, 2 * 0.5 = 1 expected ->
    # (2 + 2) / (1 + 2)
    shrunk, _ = characterise(seqs, rows, vocab, events, min_users=1, prior_users=2)
    assert shrunk.set_index("item").loc["y", "lift"] == pytest.approx(4 / 3)
    assert shrunk.set_index("item").loc["y", "raw lift"] == pytest.approx(2.0)
    assert items["item"].iloc[0] == "y"
    assert "w" not in by_item.index and "z" not in by_item.index  # no cohort user has them
    # events: the cohort's 4 events are 3 buys and 1 view; overall 3 buys of 7
    by_event = event_table.set_index("event")
    assert by_event.loc["buy", "lift"] == pytest.approx((3 / 4) / (3 / 7))
    names = cluster_names(seqs, np.array([0, 1, 0, 1]), vocab, events)
    assert names[0].startswith("0 · y")
    # numeric item ids (MovieLens) are named as items, not left to read like counts; a title
    # where the item metadata has one
    rows = [(u, i, "view", t) for t, (u, i) in enumerate(
        [("a", "528"), ("a", "17"), ("b", "528"), ("c", "9"), ("d", "9"), ("d", "17")])]
    numeric = encode(read_log(pd.DataFrame(rows, columns=["user", "item", "event", "ts"]))[0])
    labels = np.array([0, 0, 1, 1])
    plain = cluster_names(numeric, labels, numeric.item_vocab, numeric.event_vocab, n=1)
    assert plain[0] == "0 · item 528" and plain[1] == "1 · item 9"
    titled = cluster_names(numeric, labels, numeric.item_vocab, numeric.event_vocab, n=1,
                           items=pd.DataFrame({"title": ["Fargo"]}, index=["528"]))
    assert titled[0] == "0 · Fargo" and titled[1] == "1 · item 9"


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


def test_a_tiny_item_no_longer_outranks_a_well_supported_one():
    # 1,000 users; a cohort of 100: item "rare" is had by 3 cohort users and 3 overall (raw lift
    # 10), item "broad" by 60 cohort users and 200 overall (raw lift 3)
    users, items = [], []
    for u in range(1000):
        own = ["filler"]
        if u < 3:
            own.append("rare")
        if u < 60 or 100 <= u < 240:
            own.append("broad")
        users += [f"u{u:04d}"] * len(own)
        items += own
    seqs = encode(read_log(pd.DataFrame({"user": users, "item": items}))[0])
    rows = seqs.user_position([f"u{u:04d}" for u in range(100)])
    raw, _ = characterise(seqs, rows, seqs.item_vocab, seqs.event_vocab, min_users=1,
                          prior_users=0)
    assert raw["item"].iloc[0] == "rare"
    table, _ = characterise(seqs, rows, seqs.item_vocab, seqs.event_vocab)
    assert table["item"].iloc[0] == "broad"
    assert "rare" not in set(table["item"])  # 3 users: below the default minimum support (5)
    assert table.set_index("item").loc["broad", "lift"] == pytest.approx((60 + 20) / (20 + 20))
    # the shrinkage itself reorders, not only the minimum support: kept in, the rare item
    # (3 observed, 0.3 expected) ranks below the broad one
    kept, _ = characterise(seqs, rows, seqs.item_vocab, seqs.event_vocab, min_users=1)
    assert kept["item"].tolist()[:2] == ["broad", "rare"]
    assert kept.set_index("item").loc["rare", "lift"] == pytest.approx(23 / 20.3)


def test_attribute_breakdown_and_top_categories():
    frame = pd.DataFrame({
        "user": [f"u{i}" for i in range(8)],
        "attr:gender": ["F", "F", "F", "M", "M", "M", "M", None],
        "attr:age": [20.0, 22, 24, 40, 50, 60, 70, 80],
    })
    frame["attr:age"] = frame["attr:age"] + np.arange(8) * 0.1  # 8 distinct values: numeric
    table = attribute_breakdown(frame, np.array([0, 1, 2]), max_values=5)
    gender = table[table["attribute"] == "gender"].set_index("value")
    assert gender.loc["F", "cohort"] == pytest.approx(1.0)
    assert gender.loc["F", "everyone"] == pytest.approx(3 / 8)
    assert gender.loc["—", "everyone"] == pytest.approx(1 / 8)
    assert gender.index[0] == "F"  # the largest difference first
    age = table[table["attribute"] == "age"].iloc[0]
    assert age["kind"] == "numeric" and age["cohort"] == pytest.approx(22.1)
    assert age["everyone"] == pytest.approx(frame["attr:age"].mean())
    values = pd.Series(list("aaaabbbccd") + [f"x{i}" for i in range(5)])
    pooled = top_categories(values, top=3)
    assert set(pooled) == {"a", "b", "c", "other"}
    assert (pooled == "other").sum() == 6
    assert top_categories(values.head(10), top=3).equals(values.head(10))  # 4 values: kept


def test_categories_repeat_only_where_the_top_values_hold_half_the_users():
    occupations = pd.Series([f"job{i % 21}" for i in range(943)])  # 21 values, all repeat
    assert categories_repeat(occupations)
    zips = pd.Series([f"{i % 795:05d}" for i in range(943)])  # MovieLens: 795 among 943
    assert not categories_repeat(zips)
    # the 20 most common must hold half of the users that have a value, missing ones aside
    sparse = pd.Series(["a"] * 40 + [f"z{i}" for i in range(40)] + [None] * 200)
    assert categories_repeat(sparse)  # 40 + 19 of the 80 with a value (not of all 280)
    assert not categories_repeat(pd.Series(["a"] * 10 + [f"z{i}" for i in range(91)]))
    assert not categories_repeat(pd.Series([None, None], dtype=object))
