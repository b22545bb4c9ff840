"""seqvae.drift: users encoded as of two dates through the fold-in path, and what moved."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from seqvae.drift import cohort_drift, drift, items_behind, time_range, top_movers
from seqvae.errors import SeqVAEError
from seqvae.logs import read_log


@pytest.fixture
def events(timed_events) -> pd.DataFrame:
    return timed_events


@pytest.fixture
def trained(timed_model):
    return timed_model


def middle(recommender) -> pd.Timestamp:
    history = recommender.history_
    return pd.Timestamp(int(np.median(history.timestamps)), unit="us", tz="UTC")


@pytest.mark.parametrize("view", ["next", "taste"])
def test_the_end_of_the_log_gives_the_stored_users_and_idle_users_stay_put(trained, view):
    last = time_range(trained.history_)[1]
    result = drift(trained, middle(trained), last, view=view)
    stored, _ = trained.encode(trained.history_, view=view)
    # as of the last event every user on the map is exactly the stored user (of the same view)
    np.testing.assert_allclose(result.after, stored[result.rows], rtol=1e-5, atol=1e-6)
    # a user with no event between the dates did not move; one with events did
    idle = result.events_between == 0
    assert idle.any() and (~idle).any()
    assert np.all(result.movement[idle] < 1e-5)
    assert np.all(result.movement[~idle] > 1e-4)
    # every user is either on the map or counted as not there yet
    assert result.rows.size + result.not_yet == trained.history_.n_users
    counts = trained.history_.lengths[result.rows]
    np.testing.assert_array_equal(result.events_before + result.events_between, counts)


def test_as_of_a_date_is_the_fold_in_of_the_events_up_to_it(trained, events, tmp_path):
    when = middle(trained)
    result = drift(trained, when, time_range(trained.history_)[1])
    user = str(trained.history_.users[result.rows[0]])
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    own = events[(events["user_id"].astype(str) == user) & (stamps <= when)]
    path = tmp_path / "prefix.csv"
    own.to_csv(path, index=False)
    folded = trained.fold_in(read_log(path)[0])
    mu, _ = trained.encode(folded)
    np.testing.assert_allclose(result.before[0], mu[0], rtol=1e-5, atol=1e-6)


def test_movers_cohorts_and_the_items_behind(trained):
    result = drift(trained, middle(trained), time_range(trained.history_)[1])
    movers = top_movers(result, trained.history_.users, k=5)
    assert list(movers["moved"]) == sorted(movers["moved"], reverse=True)
    assert movers["moved"].iloc[0] == pytest.approx(result.movement.max())
    labels = np.arange(trained.history_.n_users) % 3
    cohorts = cohort_drift(result, labels, {0: "a", 1: "b", 2: "c"})
    assert set(cohorts["cluster"]) == {"a", "b", "c"}
    assert cohorts["users"].sum() == result.rows.size
    top = np.argsort(-result.movement)[:10]
    done, towards = items_behind(trained, result, top)
    # the items behind the move are items these users really had between the dates
    between = result.between
    mine = set()
    for row in result.rows[top]:
        mine |= set(trained.item_vocab_.token(between.of_user(int(row))["items"]).tolist())
    assert len(done) and set(done["item"]) <= mine
    assert (towards["change"] > 0).all()


def test_bad_dates_and_logs_without_times_are_refused(trained):
    first, last = time_range(trained.history_)
    with pytest.raises(SeqVAEError, match="before the second"):
        drift(trained, last, first)
    with pytest.raises(SeqVAEError, match="No user has an event"):
        drift(trained, first - pd.Timedelta(days=1), last)
    history = trained.history_
    no_times = dataclasses.replace(history, has_timestamps=False)
    with pytest.raises(SeqVAEError, match="timestamps"):
        time_range(no_times)
