"""seqvae.sample: deterministic, realistic, and the committed files are what it makes."""

from __future__ import annotations

import pandas as pd
import pytest

from seqvae.sample import SEGMENTS, generate
from tests.conftest import SAMPLE_DIR


@pytest.fixture(scope="module")
def small():
    return generate(n_users=200, n_items=100, seed=1)


def test_same_seed_same_log_other_seed_other_log(small):
    again = generate(n_users=200, n_items=100, seed=1)
    pd.testing.assert_frame_equal(small.events, again.events)
    other = generate(n_users=200, n_items=100, seed=2)
    assert not small.events.equals(other.events)


def test_funnel_and_sessions_are_realistic(small):
    counts = small.events["event_type"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    # every purchase follows a cart of the same item by the same user
    events = small.events
    carts = set(zip(events.loc[events.event_type == "cart", "user_id"],
                    events.loc[events.event_type == "cart", "item_id"], strict=True))
    buys = zip(events.loc[events.event_type == "purchase", "user_id"],
               events.loc[events.event_type == "purchase", "item_id"], strict=True)
    assert all(b in carts for b in buys)
    ts = pd.to_datetime(events["timestamp"])
    assert ts.is_monotonic_increasing


def test_segments_are_planted_apart_from_the_events(small):
    assert "segment" not in small.events.columns
    assert set(small.segments["segment"]) == {s.name for s in SEGMENTS}
    assert set(small.segments["user_id"]) == set(small.events["user_id"])


def test_segments_differ_in_taste(small):
    merged = small.events.merge(small.segments, on="user_id").merge(
        small.items[["item_id", "category"]], on="item_id")
    top = merged.groupby("segment")["category"].agg(lambda c: c.value_counts().index[0])
    assert top["tech enthusiasts"] == "Electronics"
    assert top["beauty & style"] == "Beauty"
    assert top["outdoor athletes"] == "Sports & Outdoors"


def test_committed_sample_matches_the_generator():
    committed = pd.read_csv(SAMPLE_DIR / "events.csv", dtype=str)
    fresh = generate(n_users=2000, n_items=1000, seed=7)
    pd.testing.assert_frame_equal(committed, fresh.events.astype(str))
    total = sum((SAMPLE_DIR / f).stat().st_size for f in ("events.csv", "items.csv",
                                                          "segments.csv"))
    assert total < 5 * 1024 * 1024


def test_write_names_the_side_files(tmp_path, small):
    paths = small.write(tmp_path / "shop.csv")
    assert paths["items"].name == "shop_items.csv"
    assert paths["segments"].name == "shop_segments.csv"
    assert not list(tmp_path.glob("*.tmp"))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="`n_users`"):
        generate(n_users=1)
